"""Dagster definitions: the main Meltano job as N shards of divisions (README, "Scaling out").

    dagster dev -m orchestrate.definitions                      # UI, schedule, runs on this machine
    dagster job execute -m orchestrate.definitions -j exact_to_warehouse_shards   # one run, now

One op creates the tables, then one op per shard runs ``meltano run <job>`` with
``TAP_EXACTONLINE_DIVISION_SHARD=k/n`` and a state ID of its own. At most
``EXACT_SHARD_CONCURRENCY`` shards run at once; a failed shard is retried. Where the
ops run is Dagster's choice: on one machine the multiprocess executor below, on many
the run launcher or executor configured in ``dagster.yaml`` (README).
"""

# No `from __future__ import annotations`: Dagster reads the op signatures' annotations
# at definition time and refuses string ones.
from pathlib import Path

from dagster import (
    DefaultScheduleStatus,
    Definitions,
    Failure,
    In,
    MetadataValue,
    OpExecutionContext,
    Output,
    RetryPolicy,
    ScheduleDefinition,
    job,
    multiprocess_executor,
    op,
)

from orchestrate.meltano import Settings, ShardRun, run_shard, system_dir
from orchestrate.tables import prepare_tables, schema_messages

JOB_NAME = "exact_to_warehouse_shards"
# Exit 75: the tap stopped to keep a division's daily call reserve, with its state saved.
# Retrying now would stop again at once; the next scheduled run goes on from there.
BUDGET_STOP = 75


def _log_dir(settings: Settings, context: OpExecutionContext) -> Path:
    return system_dir(settings) / "logs" / "orchestrate" / context.run_id


def _metadata(run: ShardRun) -> dict:
    return {
        "divisions": MetadataValue.json(run.divisions) if run.divisions is not None else MetadataValue.text("unknown"),
        "run summary per division": MetadataValue.json(run.summaries),
        "calls": sum(int(s.get("calls", 0)) for s in run.summaries),
        "records": sum(sum(s.get("records", {}).values()) for s in run.summaries),
        "seconds": round(run.seconds, 1),
        "log": MetadataValue.path(str(run.log_path)),
    }


def shard_op(settings: Settings, k: int):
    n = settings.shards

    @op(name=f"shard_{k}_of_{n}", ins={"catalog": In(dict)}, tags={"exact/division_shard": f"{k}/{n}"},
        retry_policy=RetryPolicy(max_retries=settings.retries, delay=settings.retry_delay),
        description=f"meltano run {settings.job} for the divisions of shard {k}/{n}")
    def run(context: OpExecutionContext, catalog: dict):
        result = run_shard(settings, k, n, _log_dir(settings, context), catalog=catalog,
                           attempt=context.retry_number + 1)
        for summary in result.summaries:
            context.log.info(f"shard {k}/{n} run summary: {summary}")
        if result.returncode == BUDGET_STOP:
            context.log.warning(f"shard {k}/{n} ({result.divisions_text}) stopped to keep the daily call reserve; "
                                "its state is saved and the next run goes on from there")
        elif result.returncode:
            failed = (f"shard {k}/{n} ({result.divisions_text}) failed: meltano exited {result.returncode}; "
                      + (" | ".join(result.errors[-3:]) or f"see {result.log_path}"))
            context.log.error(failed)
            raise Failure(description=failed, metadata=_metadata(result))
        return Output(None, metadata=_metadata(result))

    return run


def tables_op(settings: Settings):
    @op(name="prepare_tables", retry_policy=RetryPolicy(max_retries=settings.retries, delay=settings.retry_delay),
        description="Creates the job's tables and columns once, so the shards' loaders never race to create them")
    def prepare(context: OpExecutionContext):
        # The catalog goes to the shards through Dagster's IO manager (a shared one, such as
        # S3, when the steps run on several machines).
        catalog = prepare_tables(settings, _log_dir(settings, context))
        streams = [m["stream"] for m in schema_messages(catalog)]
        context.log.info(f"tables ready for {len(streams)} streams")
        return Output(catalog, metadata={"streams": MetadataValue.json(streams)})

    return prepare


def build(settings: Settings) -> Definitions:
    prepare = tables_op(settings)
    shards = [shard_op(settings, k) for k in range(1, settings.shards + 1)]

    # forkserver: Dagster is imported once and each step forks from it, instead of every
    # step starting a Python that imports Dagster again (seconds of CPU per step).
    executor = multiprocess_executor.configured(
        {"max_concurrent": settings.concurrency, "start_method": {"forkserver": {}}})

    @job(name=JOB_NAME, executor_def=executor,
         description=f"{settings.job} in {settings.shards} shards of divisions, "
                     f"at most {settings.concurrency} at once")
    def shards_job() -> None:
        catalog = prepare()
        for shard in shards:
            shard(catalog=catalog)

    schedule = ScheduleDefinition(job=shards_job, cron_schedule=settings.cron, execution_timezone=settings.timezone,
                                  default_status=DefaultScheduleStatus.RUNNING)
    return Definitions(jobs=[shards_job], schedules=[schedule])


defs = build(Settings.from_env())
