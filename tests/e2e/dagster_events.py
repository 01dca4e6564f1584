"""Prints the last Dagster run of $DAGSTER_HOME as JSON (run with the orchestrator's Python).

The e2e test reads the instance's event log, not the console: step processes write to
the console at once, and their lines may interleave.
"""

import json

from dagster import DagsterInstance

instance = DagsterInstance.get()
run = instance.get_runs(limit=1)[0]
events = []
for entry in instance.all_logs(run.run_id):
    event = entry.dagster_event
    data = getattr(event, "event_specific_data", None) if event else None
    error, errors = getattr(data, "error", None), []
    while error is not None:  # a retry wraps the op's own Failure as its cause
        errors.append(error.message)
        error = error.cause
    metadata = getattr(data, "metadata", None) or {}
    events.append({
        "step": entry.step_key,
        "type": event.event_type_value if event else "LOG",
        "message": entry.user_message,
        "error": " | ".join(errors) or None,
        "metadata": {key: getattr(value, "value", str(value)) for key, value in metadata.items()},
    })
print(json.dumps(default=str, obj={"status": run.status.value, "events": events}))
