"""target-exactonline: write records, documents and attachments to Exact Online, idempotently.

Any Singer tap can feed it (a CSV tap, a database tap, tap-exactonline itself). Each stream is named
like tap-exactonline's stream for the entity (``accounts``, ``contacts``, ``documents``, ...) and is
upserted on a natural key; see upsert.py for how a batch becomes API calls (connector.py makes
them, documents.py adds files, refusals.py judges Exact's refusals).

Unchanged records cost nothing: the write ledger (ledger.py) remembers a fingerprint of every
record Exact confirmed, so a rerun of unchanged input makes no API call at all (not even the
``current/Me`` division check, which is made only when something has to be looked up or written).

State: singer-sdk keeps the latest STATE message and emits it only after every sink has been
drained, i.e. after every record received before it was written (or rejected into the reject
file). A run that fails part-way emits no state for the unwritten records; a rerun finds what was
written by its natural key and repeats nothing. A bad input line (singer_input.py) ends the run
in one line naming it, after the records before it were written and their state acknowledged.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import typing as t
from functools import cached_property
from pathlib import Path

from singer_sdk import Target
from singer_sdk import typing as th

from exactonline_api.budget import ErrorBudget
from exactonline_api.cli import run_plugin
from exactonline_api.compat import override
from exactonline_api.connect import base_url_of
from exactonline_api.errors import ExactError
from exactonline_api.http import ExactSession
from exactonline_api.limits import RateLimiter
from exactonline_api.settings import connection_properties, logging_properties
from exactonline_api.settings_check import checked
from target_exactonline.accounts import AccountCodes
from target_exactonline.config import target_problems
from target_exactonline.connector import ExactWriter
from target_exactonline.ledger import Ledger, ledger_path
from target_exactonline.refusals import Refusals
from target_exactonline.rejects import DEFAULT_REJECT_FILE, RejectFile
from target_exactonline.singer_input import BadSingerInput, LineCountingReader
from target_exactonline.sinks import DEFAULT_BATCH_SIZE, ExactSink

LOG = logging.getLogger("target_exactonline")


class RecordsRejected(ExactError):
    """The run finished, but some records were written to the reject file instead of to Exact."""


class TargetExactOnline(Target):
    """Writes documents, attachments and other entities to Exact Online; reruns create no duplicates."""

    name = "target-exactonline"
    package_name = "tap-exactonline"  # one distribution holds the tap and the target
    default_sink_class = ExactSink
    message_reader_class = LineCountingReader
    # Pause (times the attempt) before looking again for a POST whose answer was lost.
    write_retry_delay = 1.0
    # The error budget's clock (tests move it an hour on between runs).
    budget_clock: t.Callable[[], float] = staticmethod(time.time)

    config_jsonschema = th.PropertiesList(
        *connection_properties(
            "Use the same store as tap-exactonline: Exact rotates the refresh token on every refresh."),
        *logging_properties(),
        th.Property("default_division", th.IntegerType,
                    description="Division written to when a record has no Division field"),
        th.Property("natural_keys", th.ObjectType(additional_properties=th.ArrayType(th.StringType)),
                    description="Per stream, the field(s) that identify an existing record, e.g. "
                                "{\"contacts\": [\"Email\"]}. Defaults: documents [Subject], accounts [Code], "
                                "contacts [Email], items [Code]; other streams need one."),
        th.Property("attachments_dir", th.StringType,
                    description="Folder that attachment file paths in records are relative to (default: the "
                                "working directory); paths outside it are rejected"),
        th.Property("reject_file", th.StringType, default=DEFAULT_REJECT_FILE,
                    description="JSON-lines file that rejected records are appended to, each with its reason"),
        th.Property("dry_run", th.BooleanType, default=False,
                    description="Validate, look up and report what would be created or updated; write nothing "
                                "(the ledger is read, never written)"),
        th.Property("ledger_path", th.StringType,
                    description="SQLite file in which the target remembers a fingerprint (hashes, keys and "
                                "IDs only) of each record Exact confirmed, so an unchanged record costs no API "
                                "call on the next run. Default: next to the token store file "
                                "(<token store>.target-ledger.sqlite; with a PostgreSQL token store under "
                                ".tokens/). Deleting it is safe: the next run looks everything up again"),
        th.Property("verify_unchanged", th.BooleanType, default=False,
                    description="Look every record up in Exact even when the ledger says its source did not "
                                "change, so edits made in Exact itself (or records deleted there) are "
                                "corrected; costs a lookup per batch. Off: such edits are left alone until "
                                "the source record changes"),
        th.Property("resend_refused", th.BooleanType, default=False,
                    description="Send records again that Exact refused in an earlier run although they did not "
                                "change (e.g. after fixing the cause in Exact itself). Off: such a record is "
                                "rejected again with Exact's earlier message, without a call"),
        th.Property("batch_size", th.IntegerType, default=DEFAULT_BATCH_SIZE,
                    description="Records per batch: one lookup call (or a few, for long keys) per batch"),
        th.Property("request_timeout", th.IntegerType, default=120,
                    description="Seconds to wait for an answer before retrying (GET) or checking (writes)"),
        th.Property("daily_call_reserve", th.IntegerType, default=200,
                    description="Daily calls per division left untouched for other apps; the run stops "
                                "(exit 75) when only these remain"),
    ).to_dict()

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        self._exact_sinks: list[ExactSink] = []
        self._reported = False
        with checked(self, target_problems):
            super().__init__(*args, **kwargs)

    # One sink at a time: the session, its rate limiter and the batches' order are shared.
    @property
    @override
    def max_parallelism(self) -> int:
        return 1

    @max_parallelism.setter
    def max_parallelism(self, new_value: int) -> None:
        pass

    # -- the shared client ------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return base_url_of(self.config)

    @cached_property
    def session(self) -> ExactSession:
        from exactonline_api.connect import token_manager_from_config

        tokens = token_manager_from_config(self.config, self.base_url)
        limiter = RateLimiter(daily_reserve=int(self.config.get("daily_call_reserve", 200)))
        timeout = float(self.config.get("request_timeout", 120))
        return ExactSession(tokens, limiter=limiter, timeout=(10.0, timeout), user_agent="target-exactonline",
                            error_budget=ErrorBudget.from_config(self.config, clock=self.budget_clock))

    @cached_property
    def writer(self) -> ExactWriter:
        return ExactWriter(self.session, self.base_url, dry_run=bool(self.config.get("dry_run")),
                           retry_delay=self.write_retry_delay)

    @cached_property
    def account_codes(self) -> AccountCodes:
        return AccountCodes(self.writer)

    @cached_property
    def refusals(self) -> Refusals:
        return Refusals()

    @cached_property
    def ledger(self) -> Ledger:
        """Opened (and, outside a dry run, locked) at its first use; closed at the end of the run."""
        return Ledger(ledger_path(self.config), site=self.base_url, writable=not self.config.get("dry_run"))

    @cached_property
    def rejects(self) -> RejectFile:
        return RejectFile(self.config.get("reject_file") or DEFAULT_REJECT_FILE,
                          run_started_at=self.initialized_at_datetime)

    @property
    def initialized_at_datetime(self):  # noqa: ANN201
        from datetime import datetime, timezone

        return datetime.fromtimestamp(self.initialized_at / 1000, tz=timezone.utc)

    @cached_property
    def attachments_dir(self) -> Path:
        return Path(self.config.get("attachments_dir") or Path.cwd())

    # -- sinks in arrival order ---------------------------------------------------------------------------

    def register_sink(self, sink: ExactSink) -> None:
        self._exact_sinks.append(sink)

    def drain_earlier(self, sink: ExactSink) -> None:
        """Drain the sinks of streams that arrived before ``sink``'s (their records may be referenced)."""
        for other in list(self._exact_sinks):
            if other is sink:
                return
            self.drain_one(other)

    # -- end of run --------------------------------------------------------------------------------------

    @override
    def listen(self, file_input: t.IO[str] | None = None) -> None:
        try:
            try:
                super().listen(file_input)
            except BadSingerInput as exc:
                # The records before the bad line are written, and only the state received before it
                # is acknowledged: a rerun of the fixed input repeats nothing and skips nothing.
                self.drain_all()
                raise BadSingerInput(exc.line, f"{exc.problem}. The records before it were written and no "
                                               "state past them was acknowledged; fix that line and run again"
                                     ) from None
        finally:
            try:
                if not self._reported:
                    self.report(finished=False)
            finally:
                self._close_ledger()

    def _close_ledger(self) -> None:
        """Commit the last confirmed rows and release the ledger's lock (also after a failure)."""
        if "ledger" not in self.__dict__:
            return
        if sys.exc_info()[1] is None:
            self.ledger.close()
            return
        try:  # the failure in flight is what to report, not a ledger problem after it
            self.ledger.close()
        except Exception as exc:  # noqa: BLE001
            LOG.warning("the ledger could not be saved after the failure: %s", exc)

    @override
    def process_endofpipe(self) -> None:
        super().process_endofpipe()  # drains every sink, then emits the latest state
        self.report(finished=True)

    def summary(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for sink in self._exact_sinks:
            counts = out.setdefault(sink.stream_name, {})
            for name, value in sink.upserter.tally.as_dict().items():
                counts[name] = counts.get(name, 0) + value
        return out

    def report(self, *, finished: bool) -> None:
        self._reported = True
        dry = bool(self.config.get("dry_run"))
        for stream, counts in self.summary().items():
            LOG.info("run summary%s: %s", " (dry run: nothing written)" if dry else "",
                     json.dumps({"stream": stream, **counts}))
        if "session" in self.__dict__:
            for budget in self.session.limiter.budgets.values():
                LOG.info("api calls: %s", json.dumps(budget.summary()))
        if "ledger" in self.__dict__:
            skipped = sum(sink.upserter.tally.ledger_unchanged for sink in self._exact_sinks)
            LOG.info("ledger %s: %d record(s) unchanged without a call%s", self.ledger.describe(), skipped,
                     " (dry run: ledger not written)" if dry else f", {self.ledger.saved} saved")
        if not finished:
            return
        summary = self.summary()
        rejected = {s: c["rejected"] for s, c in summary.items() if c.get("rejected")}
        if rejected:
            raise RecordsRejected(self._rejects_line(summary, rejected, dry))

    def _rejects_line(self, summary: dict[str, dict[str, int]], rejected: dict[str, int], dry: bool) -> str:
        """The closing line: counts only, each of them true (what was written is counted, not assumed)."""
        total = sum(rejected.values())
        per_stream = ", ".join(f"{s}: {n}" for s, n in rejected.items())
        done = {name: sum(c.get(name, 0) for c in summary.values()) for name in ("created", "updated", "unchanged")}
        others = "Of the others (dry run, nothing written)" if dry else "Of the others"
        line = (f"{total} record{'s' if total != 1 else ''} rejected ({per_stream}); the reasons are in "
                f"{self.rejects.path}. {others}: {done['created']} created, {done['updated']} updated, "
                f"{done['unchanged']} unchanged")
        not_sent = sum(sink.upserter.tally.not_sent for sink in self._exact_sinks)
        if not_sent:
            line += (f". {not_sent} of the rejected {'was' if not_sent == 1 else 'were'} not sent to Exact (see their "
                     "reasons)")
        return line


def cli() -> None:
    """Console entry: the Singer CLI with one-line errors; exit 1 when records were rejected."""
    run_plugin("target-exactonline", TargetExactOnline)
