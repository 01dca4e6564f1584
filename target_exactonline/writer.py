"""The Exact side of the target: batched lookups by natural key, field-wise diffs, safe creates.

Exact has no upsert, so every batch goes through the same steps, per division:

0. records the write ledger (ledger.py) knows unchanged since the target last wrote them are done,
   without a call; only the others go on, and the first of those in a run triggers the division
   check (``current/Me``); a record's ledger row is written once Exact confirmed it;
1. one filtered GET per URL-sized chunk of the batch finds the existing records by natural key
   (``$filter=Code eq 'a' or Code eq 'b' ...``, split to Exact's 6,000-character URL limit by
   :func:`exactonline_api.odata.batch_or_filters`, string values escaped, only the fields compared
   in ``$select``);
2. a record without a match is POSTed; a record with one match is compared field by field and PUT
   with only the fields that differ; an unchanged record gets no write;
3. a POST whose answer is lost (timeout, 5xx, dropped connection:
   :class:`exactonline_api.http.WriteOutcomeUnknown`) is followed by a lookup of its natural key
   (and, when that finds nothing, one more after a pause, for a request still running at Exact)
   before any retry, so a retry never creates a duplicate; a PUT is simply repeated.

A record Exact refuses (4xx) is rejected and the batch goes on; after five refusals on one endpoint
and division in a run the rest of its records wait for the next run, because Exact blocks an
endpoint for an hour after ten errors.

``crm/Accounts.Code`` is stored left-padded to 18 characters; it is looked up with
``trim(Code) eq 'WB0001'``, which finds the code whatever the padding (Exact documents ``trim``),
and compared with surrounding blanks ignored.

Request bodies (which can hold base64 attachments) are never logged.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from exactonline_api import odata
from exactonline_api.errors import ExactAPIError, ExactError
from exactonline_api.http import ExactSession, WriteOutcomeUnknown
from exactonline_api.registry import Endpoint, Field, endpoints
from exactonline_api.timeutil import EXACT_TZ
from target_exactonline.attachments import AttachmentSource
from target_exactonline.ledger import MAX_FILE_VERSIONS, Entry, Ledger, fingerprint, record_key
from target_exactonline.fields import (
    INTEGER,
    NUMBER,
    BadValue,
    comparable,
    is_empty,
    key_part,
    local_datetime,
    same,
    squash,
)
from target_exactonline.rejects import RejectFile

LOG = logging.getLogger("target_exactonline.writer")

WRITE_HEADERS = {"Prefer": "return=representation", "Content-Type": "application/json"}
# Room left in the URL for the $skiptoken Exact appends to __next links.
URL_MARGIN = 100
_QUOTE_SAFE = odata.QUERY_SAFE
# Fields Exact stores padded: looked up through trim(), see the module docstring.
PADDED_FIELDS = frozenset({("crm/Accounts", "Code")})
# Client errors that concern one record: it goes to the reject file and the run goes on.
# 401 (auth), 429 (limits) and blocked endpoints stop the run instead (ExactSession raises those as
# other errors or with these statuses only after its own handling).
RECORD_ERRORS = frozenset({400, 403, 404, 405, 409, 413, 422})
DRY_RUN_ID = "00000000-0000-0000-0000-000000000000"
# Exact blocks an endpoint (per app, company and hour) after 10 responses 400/401/403/404. The target
# stops sending to an endpoint after this many refusals in a run, leaving room for the tap.
COUNTED_ERRORS = frozenset({400, 401, 403, 404})
MAX_ERRORS_PER_ENDPOINT = 5
NUMERIC = INTEGER | NUMBER


class RecordRejected(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def record_error(exc: ExactAPIError) -> bool:
    return exc.status in RECORD_ERRORS


# -- the HTTP-level operations ----------------------------------------------------------------------


class ExactWriter:
    """Lookups and writes on one :class:`ExactSession`; knows nothing about Singer."""

    def __init__(
        self,
        session: ExactSession,
        base_url: str,
        *,
        dry_run: bool = False,
        post_attempts: int = 3,
        retry_delay: float = 1.0,
    ) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.dry_run = dry_run
        self.post_attempts = max(1, post_attempts)
        self.retry_delay = retry_delay
        self._current_division: int | None = None
        self._granted: set[int] | None = None
        # (division, normalised account code) -> account ID ("" when several accounts share the code),
        # filled by every accounts lookup of the run so AccountCode on contacts/documents costs no call.
        self.account_ids: dict[tuple[int, str], str] = {}
        # (division, endpoint path) -> client errors Exact answered to our writes in this run.
        self.errors: dict[tuple[int, str], int] = {}

    def note_accounts(self, division: int, rows: Iterable[dict]) -> None:
        seen: dict[str, set[str]] = {}
        for row in rows:
            if row.get("Code") and row.get("ID"):
                seen.setdefault(key_part("Edm.String", row["Code"]), set()).add(str(row["ID"]))
        for code, ids in seen.items():
            self.account_ids[(division, code)] = next(iter(ids)) if len(ids) == 1 else ""

    # URLs

    def collection_url(self, endpoint: Endpoint, division: int) -> str:
        return f"{self.base_url}/api/v1/{endpoint.url_path(division)}"

    def entity_url(self, endpoint: Endpoint, division: int, ident: Any) -> str:
        key = endpoint.field(endpoint.primary_key[0]) if endpoint.primary_key else None
        edm = key.edm if key else "Edm.Guid"
        return f"{self.collection_url(endpoint, division)}({odata.literal(ident, edm)})"

    # reads

    def get_rows(self, url: str) -> list[dict]:
        """Every row behind a URL (the session's one pagination loop: our own host only)."""
        rows: list[dict] = []
        for payload in self.session.paginate(url):
            try:
                rows.extend(odata.results(payload))
            except ValueError as exc:
                raise ExactError(f"unexpected answer from Exact ({exc})") from None
        return rows

    @staticmethod
    def clause(endpoint: Endpoint, fields: Sequence[Field], values: Sequence[Any]) -> str:
        """``Email eq 'a@b.nl'``, ``trim(Code) eq 'WB1'``, ``(Document eq guid'..' and FileName eq 'x')``."""
        parts = []
        for fld, value in zip(fields, values):
            if (endpoint.path, fld.name) in PADDED_FIELDS:
                parts.append(f"trim({fld.name}) eq {odata.string_literal(str(value).strip())}")
                continue
            if fld.edm == "Edm.DateTime":
                value = local_datetime(value).replace(tzinfo=EXACT_TZ)
            parts.append(f"{fld.name} eq {odata.literal(value, fld.edm)}")
        return parts[0] if len(parts) == 1 else "(" + " and ".join(parts) + ")"

    def find(
        self,
        endpoint: Endpoint,
        division: int,
        fields: Sequence[Field],
        keys: Iterable[Sequence[Any]],
        select: Iterable[str],
    ) -> list[dict]:
        """Rows whose ``fields`` equal one of ``keys``: one GET per URL-sized chunk (plus pages)."""
        unique: dict[tuple, Sequence[Any]] = {}
        for key in keys:
            unique.setdefault(tuple(key_part(f.edm, v) for f, v in zip(fields, key)), key)
        if not unique:
            return []
        clauses = [self.clause(endpoint, fields, key) for key in unique.values()]
        names = ",".join(dict.fromkeys(s for s in select if endpoint.has(s)))
        prefix = f"{self.collection_url(endpoint, division)}?$select={quote(names, safe=_QUOTE_SAFE)}&$filter="
        budget = odata.MAX_URL_LENGTH - len(prefix) - URL_MARGIN
        rows: list[dict] = []
        for expression, _ in odata.batch_or_filters(clauses, budget):
            rows.extend(self.get_rows(prefix + quote(expression, safe=_QUOTE_SAFE)))
        return rows

    def division_problems(self, divisions: Iterable[int]) -> dict[int, str]:
        """Divisions this token may not write to, with the reason (at most two calls per run)."""
        wanted = set(divisions)
        if not wanted:
            return {}
        if self._current_division is None:
            me = odata.results(self.session.get_json(f"{self.base_url}/api/v1/current/Me?$select=CurrentDivision"))
            self._current_division = int(me[0]["CurrentDivision"])
        if wanted <= {self._current_division}:
            return {}
        if self._granted is None:
            rows = self.get_rows(f"{self.base_url}/api/v1/{self._current_division}/system/Divisions?$select=Code")
            self._granted = {int(row["Code"]) for row in rows} | {self._current_division}
            LOG.info("divisions this app may use: %s", sorted(self._granted))
        allowed = ", ".join(str(d) for d in sorted(self._granted))
        return {d: f"division {d} is not one of the divisions this app may use ({allowed})"
                for d in sorted(wanted - self._granted)}

    # writes

    def create(
        self,
        endpoint: Endpoint,
        division: int,
        body: dict,
        *,
        describe: str,
        recover: Callable[[], dict | None],
    ) -> dict:
        """POST; when the answer is lost, look the record up before trying again (never a duplicate)."""
        url = self.collection_url(endpoint, division)
        for attempt in range(1, self.post_attempts + 1):
            try:
                response = self.session.post(url, json=body, headers=WRITE_HEADERS)
            except WriteOutcomeUnknown as exc:
                LOG.warning("%s: %s; looking it up before any retry", describe, exc)
                found = recover()
                if found is None:
                    # A request we gave up on (timeout) may still be running at Exact and land late:
                    # look once more after a pause before posting again.
                    self.session.sleep(self.retry_delay * attempt)
                    found = recover()
                if found is not None:
                    LOG.info("%s: the lost POST did create it; not posting again", describe)
                    return found
                if attempt == self.post_attempts:
                    raise ExactError(
                        f"{describe}: Exact did not answer {attempt} POSTs and the record is not there; "
                        "stopping without saving state (a rerun picks it up)") from None
                LOG.info("%s: not created; posting again (attempt %d/%d)", describe, attempt + 1,
                         self.post_attempts)
                continue
            row = _single_row(response)
            if row is None or not _ident(endpoint, row):
                # Some endpoints answer only the key, or nothing usable: fetch the record itself.
                row = recover() or dict(body)
            return row
        raise AssertionError("unreachable")

    def update(self, endpoint: Endpoint, division: int, ident: Any, body: dict, *, describe: str) -> None:
        """PUT (idempotent: a lost answer is simply retried)."""
        url = self.entity_url(endpoint, division, ident)
        for attempt in range(1, self.post_attempts + 1):
            try:
                self.session.put(url, json=body, headers=WRITE_HEADERS)
                return
            except WriteOutcomeUnknown as exc:
                if attempt == self.post_attempts:
                    raise ExactError(f"{describe}: Exact did not answer {attempt} PUTs; stopping without "
                                     "saving state (a rerun picks it up)") from None
                LOG.warning("%s: %s; a PUT is safe to repeat, retrying", describe, exc)
                self.session.sleep(self.retry_delay * attempt)


def _empty_enough(edm: str, exact_value: Any) -> bool:
    """Whether Exact's value counts as empty for a record that leaves the field empty.

    An empty cell clears a text, date or reference in Exact, but cannot express "no" for a boolean,
    and a number Exact keeps at 0 is as empty as it gets; comparing those would PUT on every run.
    """
    if edm == "Edm.Boolean":
        return True
    normal = comparable(edm, exact_value)
    return normal is None or (edm in NUMERIC and normal == 0)


def _single_row(response: Any) -> dict | None:
    try:
        rows = odata.results(response.json())
    except ValueError:
        return None
    return rows[0] if rows and isinstance(rows[0], dict) else None


def _ident(endpoint: Endpoint, row: dict) -> Any:
    name = endpoint.primary_key[0] if endpoint.primary_key else "ID"
    return row.get(name)


# -- per-stream bookkeeping ------------------------------------------------------------------------


@dataclass
class Tally:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    attachments_created: int = 0
    attachments_skipped: int = 0
    merged: int = 0
    # Of ``unchanged``: records the ledger vouched for, without a call (logged, not in the summary).
    ledger_unchanged: int = 0

    def as_dict(self) -> dict[str, int]:
        out = {"created": self.created, "updated": self.updated, "unchanged": self.unchanged,
               "rejected": self.rejected}
        if self.merged:
            out["merged_duplicates"] = self.merged
        if self.attachments_created or self.attachments_skipped:
            out["attachments_created"] = self.attachments_created
            out["attachments_skipped"] = self.attachments_skipped
        return out


@dataclass
class Item:
    """One record on its way to Exact."""

    record: dict
    division: int | None = None
    values: dict[str, Any] = field(default_factory=dict)
    account_code: str | None = None
    document_subject: str | None = None
    attachments: list[AttachmentSource] = field(default_factory=list)
    row: dict | None = None
    outcome: str | None = None
    rejected: bool = False
    # The write ledger: this record's key and fingerprint there, what it held before this run, and
    # what to keep there once Exact confirmed the record (attachments: the contents per file name).
    ledger_key: str | None = None
    fingerprint: str | None = None
    ledger_entry: Entry | None = None
    files: dict[str, list[list]] = field(default_factory=dict)


class BaseUpserter:
    """What every stream shares: shaping, divisions, account codes, rejects, the tally."""

    def __init__(
        self,
        *,
        writer: ExactWriter,
        stream: str,
        endpoint: Endpoint,
        shaper: Callable[[dict], Item],
        rejects: RejectFile,
        default_division: int | None,
        ledger: Ledger | None = None,
        verify_unchanged: bool = False,
    ) -> None:
        self.writer = writer
        self.stream = stream
        self.endpoint = endpoint
        self.shaper = shaper
        self.rejects = rejects
        self.default_division = default_division
        self.ledger = ledger
        # verify_unchanged: the ledger is kept (and its attachment hashes used) but never trusted to
        # skip a lookup.
        self.trust_ledger = ledger is not None and not verify_unchanged
        self.tally = Tally()
        self._refused_divisions: dict[int, str] = {}

    @property
    def dry_run(self) -> bool:
        return self.writer.dry_run

    def key_of(self, item: Item) -> dict[str, Any] | None:
        return None

    def reject(self, item: Item, reason: str) -> None:
        if item.rejected:
            return
        item.rejected = True
        self.tally.rejected += 1
        self.rejects.write(self.stream, item.record, reason, division=item.division, key=self.key_of(item))

    def process(self, records: Sequence[dict]) -> None:
        """One batch: shape, then per division skip what the ledger vouches for, then look up and write.

        Calls to Exact (the division check through ``current/Me``, lookups, writes) are made only for
        records the ledger does not know unchanged: a batch that changed nothing costs none.
        """
        items: list[Item] = []
        for record in records:
            try:
                items.append(self.shaper(record))
            except RecordRejected as exc:
                item = Item(record=record)
                self.reject(item, exc.reason)
        self._default_divisions(items)
        by_division: dict[int, list[Item]] = {}
        for item in items:
            if not item.rejected:
                by_division.setdefault(int(item.division), []).append(item)  # type: ignore[arg-type]
        pending: dict[int, list[Item]] = {}
        for division, group in by_division.items():
            live = self.check_ledger(division, self.prepare(division, group))
            if live:
                pending[division] = live
        if not pending:
            return
        try:
            problems = self.writer.division_problems(pending)
            for division, group in pending.items():
                for item in group:
                    if not item.rejected and division in problems:
                        self.reject(item, problems[division])
                live = [i for i in group if not i.rejected]
                if not live:
                    continue
                self._resolve_account_codes(division, live)
                self.process_division(division, [i for i in live if not i.rejected])
        except BaseException:
            if self.ledger is not None:
                # What Exact confirmed before the failure is worth keeping; the failure is what to report.
                with contextlib.suppress(Exception):
                    self.ledger.flush()
            raise
        if self.ledger is not None:
            self.ledger.flush()

    def prepare(self, division: int, items: list[Item]) -> list[Item]:
        """Checks that need no call, before the ledger is asked (entities: natural key, duplicates)."""
        return items

    def process_division(self, division: int, items: list[Item]) -> None:
        raise NotImplementedError

    def _default_divisions(self, items: list[Item]) -> None:
        for item in items:
            if item.rejected:
                continue
            if item.division is None:
                item.division = self.default_division
            if item.division is None:
                self.reject(item, "no Division in the record and no default_division in the config")

    # -- the write ledger ------------------------------------------------------------------------------

    def ledger_identity(self, item: Item) -> tuple[str, Any] | None:
        """(ledger key, content to fingerprint) of a record; None: not kept in the ledger."""
        return None

    def check_ledger(self, division: int, items: list[Item]) -> list[Item]:
        """The records still to look up: those the ledger does not know, or knows with other content."""
        if self.ledger is None or not items:
            return items
        for item in items:
            try:
                identity = self.ledger_identity(item)
            except BadValue as exc:
                self.reject(item, str(exc))
                continue
            if identity is not None:
                item.ledger_key, item.fingerprint = identity[0], fingerprint(identity[1])
        entries = self.ledger.lookup(self.stream, division, [i.ledger_key for i in items
                                                            if i.ledger_key and not i.rejected])
        pending = []
        for item in items:
            if item.rejected:
                continue
            entry = entries.get(item.ledger_key) if item.ledger_key else None
            item.ledger_entry = entry
            if (self.trust_ledger and entry is not None and entry.fingerprint == item.fingerprint
                    and self._same_account(division, item, entry)):
                self.unchanged_by_ledger(item)
            else:
                pending.append(item)
        known = len(items) - len(pending) - sum(1 for i in items if i.rejected)
        if known:
            LOG.info("%s (division %s): %d record(s) unchanged since the target last wrote them (ledger %s); "
                     "not looked up", self.stream, division, known, self.ledger.describe())
        return pending

    def _same_account(self, division: int, item: Item, entry: Entry) -> bool:
        """False when this run found the record's AccountCode on another account than the ledger's."""
        if item.account_code is None:
            return True
        now = self.writer.account_ids.get((division, key_part("Edm.String", item.account_code)))
        if now is None:  # not looked up in this run: the account the ledger knows stands
            return True
        return bool(now) and same("Edm.Guid", now, entry.extra.get("account"))

    def unchanged_by_ledger(self, item: Item) -> None:
        item.outcome = "unchanged"
        self.tally.unchanged += 1
        self.tally.ledger_unchanged += 1
        LOG.debug("%s: unchanged since the last run (ledger)", self.describe(item))

    def settle(self, division: int, item: Item, exact_id: Any = None) -> None:
        """Exact confirmed this record (written, or found equal): keep it in the ledger."""
        if self.ledger is None or item.rejected or not item.ledger_key or not item.fingerprint:
            return
        extra: dict[str, Any] = {}
        if item.account_code is not None and item.values.get("Account"):
            extra["account"] = str(item.values["Account"])
        if item.files:
            extra["files"] = item.files
        self.ledger.record(self.stream, division, item.ledger_key, item.fingerprint, exact_id, extra)

    def describe(self, item: Item) -> str:
        return f"{self.stream} (division {item.division})"

    def _resolve_account_codes(self, division: int, items: list[Item]) -> None:
        """``AccountCode`` -> ``Account`` GUID: one lookup for all codes of the batch, cached per run."""
        wanted = [i for i in items if i.account_code is not None]
        if not wanted:
            return
        accounts = endpoints()["crm/Accounts"]
        code_field = accounts.field("Code")
        assert code_field is not None
        known = self.writer.account_ids
        missing = {key_part("Edm.String", i.account_code): i.account_code for i in wanted
                   if (division, key_part("Edm.String", i.account_code)) not in known}
        if missing:
            rows = self.writer.find(accounts, division, [code_field], [(c,) for c in missing.values()],
                                    ["ID", "Code"])
            self.writer.note_accounts(division, rows)
        for item in wanted:
            account = known.get((division, key_part("Edm.String", item.account_code)))
            if account is None:
                self.reject(item, f"account code {item.account_code!r} not found in division {division}")
            elif account == "":
                self.reject(item, f"account code {item.account_code!r} matches several accounts in division "
                                  f"{division}")
            elif item.values.get("Account") and not same("Edm.Guid", item.values["Account"], account):
                self.reject(item, f"Account {item.values['Account']} and AccountCode {item.account_code!r} "
                                  "name different accounts")
            else:
                item.values["Account"] = account

    def handle_exact_error(self, item: Item, exc: ExactAPIError, what: str = "", path: str | None = None) -> None:
        """A client error on one record: reject it (403 also stops further writes to that division)."""
        if not record_error(exc):
            raise exc
        reason = f"Exact refused {what or 'it'}: {exc.message_text} (HTTP {exc.status})"
        if exc.status == 403 and item.division is not None:
            self._refused_divisions[item.division] = reason
        if item.division is not None and exc.status in COUNTED_ERRORS:
            key = (item.division, path or self.endpoint.path)
            self.writer.errors[key] = self.writer.errors.get(key, 0) + 1
        self.reject(item, reason)

    def refused(self, item: Item, path: str | None = None) -> bool:
        """Reject without a call when Exact already refused this division, or too much on this endpoint."""
        reason = self._refused_divisions.get(item.division) if item.division is not None else None
        if reason:
            self.reject(item, f"not sent: an earlier write to this division was refused ({reason})")
            return True
        path = path or self.endpoint.path
        errors = self.writer.errors.get((item.division, path), 0)  # type: ignore[arg-type]
        if errors >= MAX_ERRORS_PER_ENDPOINT:
            self.reject(item, f"not sent: Exact already refused {errors} records on {path} in division "
                              f"{item.division} in this run, and it blocks an endpoint for an hour after 10 "
                              "errors; fix those first, this one is sent on the next run")
            return True
        return False


class EntityUpserter(BaseUpserter):
    """Accounts, contacts, items, documents, ...: upsert on a natural key."""

    def __init__(self, *, natural_key: Sequence[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.natural_key = tuple(natural_key)
        self.key_fields = [self.endpoint.field(name) for name in self.natural_key]
        assert all(self.key_fields)
        self.pk = self.endpoint.primary_key[0] if self.endpoint.primary_key else "ID"
        self.entity_name = self.stream

    def key_of(self, item: Item) -> dict[str, Any] | None:
        key = {name: item.values.get(name) for name in self.natural_key if name in item.values}
        if not key:  # rejected before its values were read: name it by the record's own fields
            by_squash = {squash(str(k)): v for k, v in item.record.items()}
            key = {name: by_squash[squash(name)] for name in self.natural_key if squash(name) in by_squash}
        return key or None

    def key_text(self, item: Item) -> str:
        return ", ".join(f"{name}={item.values.get(name)!r}" for name in self.natural_key)

    def describe(self, item: Item) -> str:
        return f"{self.stream} {self.key_text(item)} (division {item.division})"

    def normal_key(self, values: dict) -> tuple:
        return tuple(key_part(f.edm, values.get(f.name)) for f in self.key_fields)  # type: ignore[union-attr]

    def comparable_field(self, name: str) -> Field | None:
        fld = self.endpoint.field(name)
        if fld is None or fld.name == self.pk or fld.edm == "Edm.Binary" or not (fld.post or fld.put):
            return None
        return fld

    def prepare(self, division: int, items: list[Item]) -> list[Item]:
        live = []
        for item in items:
            missing = [name for name in self.natural_key if is_empty(item.values.get(name))]
            if missing:
                self.reject(item, f"natural key field {', '.join(missing)} is missing or empty "
                                  f"(natural_keys.{self.stream} = {list(self.natural_key)})")
            else:
                live.append(item)
        return self.merge_duplicates(live)

    def ledger_identity(self, item: Item) -> tuple[str, Any] | None:
        # Before AccountCode is resolved: the fingerprint is of the record as the source gave it.
        key = record_key(zip(self.natural_key, self.normal_key(item.values)))
        content = {"endpoint": self.endpoint.path, "values": item.values, "account_code": item.account_code,
                   "attachments": sorted(source.fingerprint() for source in item.attachments)}
        return key, content

    def written(self, division: int, item: Item) -> None:
        """The record is in Exact as the source has it (created, updated or found equal)."""
        self.settle(division, item, (item.row or {}).get(self.pk))

    def process_division(self, division: int, items: list[Item]) -> None:
        live = items
        if not live:
            return
        compared = {name for item in live for name in item.values if self.comparable_field(name)}
        select = [self.pk, *self.natural_key, *sorted(compared)]
        rows = self.writer.find(self.endpoint, division, self.key_fields,  # type: ignore[arg-type]
                                [[item.values[n] for n in self.natural_key] for item in live], select)
        index: dict[tuple, list[dict]] = {}
        for row in rows:
            index.setdefault(self.normal_key(row), []).append(row)
        remember_accounts = self.endpoint.path == "crm/Accounts"
        if remember_accounts:
            self.writer.note_accounts(division, rows)
        for item in live:
            if self.refused(item):
                continue
            key = self.normal_key(item.values)
            matches = index.get(key, [])
            try:
                if len(matches) > 1:
                    raise RecordRejected(
                        f"{len(matches)} records in Exact have {self.key_text(item)}; the natural key must "
                        f"identify one record (natural_keys.{self.stream})")
                if matches:
                    self.update(division, item, matches[0])
                else:
                    item.row = self.create(division, item, select)
                    item.outcome = "created"
                    self.tally.created += 1
                    index[key] = [item.row]
                    if remember_accounts:
                        # In a dry run the new account has no ID yet: a stand-in lets contacts and
                        # documents that name it by AccountCode be checked too.
                        self.writer.note_accounts(division, [{"ID": DRY_RUN_ID, **item.row}] if self.dry_run
                                                  else [item.row])
                self.written(division, item)
            except RecordRejected as exc:
                self.reject(item, exc.reason)
            except ExactAPIError as exc:
                self.handle_exact_error(item, exc)
        self.after_division(division, [i for i in live if not i.rejected])

    def merge_duplicates(self, items: list[Item]) -> list[Item]:
        """Records of one batch with the same natural key become one: later values win.

        Without this a CSV that lists a contact twice would flip it back and forth on every run.
        """
        merged: dict[tuple, Item] = {}
        for item in items:
            key = self.normal_key(item.values)
            first = merged.get(key)
            if first is None:
                merged[key] = item
                continue
            first.values.update(item.values)
            if item.account_code is not None:
                first.account_code = item.account_code
            later = {s.file_name.casefold() for s in item.attachments}
            first.attachments = [s for s in first.attachments if s.file_name.casefold() not in later]
            first.attachments.extend(item.attachments)
            self.tally.merged += 1
            LOG.info("%s: appears more than once in the batch; merged (later values win)", self.describe(item))
        return list(merged.values())

    def after_division(self, division: int, items: list[Item]) -> None:
        """Hook for work that needs the records' IDs (documents: their attachments)."""

    def update(self, division: int, item: Item, row: dict) -> None:
        item.row = row
        changes: dict[str, Any] = {}
        fixed: list[str] = []
        for name, value in item.values.items():
            fld = self.comparable_field(name)
            if fld is None or name not in row or same(fld.edm, row.get(name), value):
                continue
            if is_empty(value) and _empty_enough(fld.edm, row.get(name)):
                continue  # an empty cell against Exact's default (false, 0): nothing to clear
            if fld.put and "PUT" in self.endpoint.methods:
                changes[name] = value
            else:
                fixed.append(name)
        if fixed:
            LOG.warning("%s: %s differ(s) from Exact, but Exact does not accept changes to %s on an "
                        "existing record; left as it is", self.describe(item), ", ".join(fixed),
                        "it" if len(fixed) == 1 else "them")
        if not changes:
            item.outcome = "unchanged"
            self.tally.unchanged += 1
            return
        if not self.dry_run:
            self.writer.update(self.endpoint, division, row[self.pk], changes, describe=self.describe(item))
        row.update(changes)
        item.outcome = "updated"
        self.tally.updated += 1
        LOG.info("%s: %supdated %s", self.describe(item), "(dry run) would be " if self.dry_run else "",
                 ", ".join(sorted(changes)))

    def create(self, division: int, item: Item, select: Sequence[str]) -> dict:
        if "POST" not in self.endpoint.methods:
            raise RecordRejected(f"no record in Exact has {self.key_text(item)}, and Exact does not allow "
                                 f"creating {self.stream} through the API")
        missing = [name for name in self.endpoint.mandatory_on_post if is_empty(item.values.get(name))]
        if missing:
            raise RecordRejected(f"missing mandatory field {', '.join(missing)} (Exact needs it to create "
                                 f"a new record; none has {self.key_text(item)})")
        body = {}
        for name, value in item.values.items():
            fld = self.endpoint.field(name)
            if name == self.pk and name not in self.natural_key:
                continue  # an ID from elsewhere (another division, a tap's record) is not this record's
            if not is_empty(value) and fld is not None and fld.post:
                body[name] = value
        if self.dry_run:
            LOG.info("%s: (dry run) would be created", self.describe(item))
            return dict(body)
        row = self.writer.create(self.endpoint, division, body, describe=self.describe(item),
                                 recover=lambda: self.find_one(division, item, select))
        LOG.info("%s: created", self.describe(item))
        return row

    def find_one(self, division: int, item: Item, select: Sequence[str]) -> dict | None:
        rows = self.writer.find(self.endpoint, division, self.key_fields,  # type: ignore[arg-type]
                                [[item.values[n] for n in self.natural_key]], select)
        key = self.normal_key(item.values)
        matches = [row for row in rows if self.normal_key(row) == key]
        return matches[-1] if matches else None


# -- attachments -------------------------------------------------------------------------------------


ATTACHMENTS_PATH = "documents/DocumentAttachments"
_ATTACHMENT_SELECT = ("ID", "Document", "FileName", "FileSize")


def _size_of(row: dict) -> int | None:
    try:
        return int(round(float(row.get("FileSize"))))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _guid_key(value: Any) -> str:
    return str(uuid.UUID(str(value)))


class AttachmentWriter:
    """Adds files to documents; a file already there (same name and size) is skipped."""

    def __init__(self, writer: ExactWriter, tally: Tally) -> None:
        self.writer = writer
        self.tally = tally
        self.endpoint = endpoints()[ATTACHMENTS_PATH]
        self.document_field = self.endpoint.field("Document")
        self.name_field = self.endpoint.field("FileName")

    def existing(self, division: int, document_ids: Iterable[Any]) -> dict[str, list[dict]]:
        """The attachments of these documents (name, size, ID): one lookup per URL-sized chunk."""
        ids = [_guid_key(d) for d in document_ids if d]
        by_document: dict[str, list[dict]] = {d: [] for d in ids}
        if not ids:
            return by_document
        rows = self.writer.find(self.endpoint, division, [self.document_field],  # type: ignore[list-item]
                                [(d,) for d in ids], _ATTACHMENT_SELECT)
        for row in rows:
            by_document.setdefault(_guid_key(row["Document"]), []).append(row)
        return by_document

    def add(self, division: int, document_id: Any, source: AttachmentSource, present: list[dict],
            describe: str, known: Collection[Sequence] | None = None) -> tuple[bool, Any]:
        """Upload ``source`` unless it is in ``present`` (updated in place).

        ``known``: (size, SHA-256) of the contents the target uploaded, or found, under this file name
        on this document in earlier runs (from the ledger). With it, a file of the same name and size
        but another content is a changed file; without it, name and size decide.
        Returns (uploaded, the attachment's ID in Exact when known).
        """
        name = source.file_name.casefold()
        same_name = [row for row in present if str(row.get("FileName") or "").casefold() == name]
        same_size = [row for row in same_name if _size_of(row) == source.size]
        versions = _versions(known)
        if same_size and (not versions or (source.size, source.sha256) in versions):
            self.tally.attachments_skipped += 1
            LOG.debug("%s: attachment %s is already there; skipped", describe, source.describe())
            return False, same_size[-1].get("ID")
        if same_size:
            LOG.warning("%s: attachment %r changed: same name and size (%d bytes), but other content than the "
                        "target put there before (SHA-256 now %s..., before %s...). Exact cannot update "
                        "attachments, so the new file is added as another attachment next to the old one",
                        describe, source.file_name, source.size, source.sha256[:12],
                        ", ".join(sorted(sha[:12] for size, sha in versions if size == source.size)))
        elif same_name:
            sizes = ", ".join(str(_size_of(row)) for row in same_name)
            LOG.warning("%s: attachment %r changed (now %d bytes, in Exact %s bytes). Exact cannot update "
                        "attachments, so the new file is added as another attachment next to the old one",
                        describe, source.file_name, source.size, sizes)
        ident = None
        if self.dry_run:
            LOG.info("%s: (dry run) attachment %s would be added", describe, source.describe())
        else:
            ids = {str(row.get("ID")) for row in present}
            body = {"Document": str(document_id), "FileName": source.file_name,
                    "Attachment": source.content_base64()}
            what = f"{describe}: attachment {source.describe()}"
            row = self.writer.create(self.endpoint, division, body, describe=what,
                                     recover=lambda: self._find_new(division, document_id, source, ids))
            ident = row.get("ID")
            present.append({"ID": ident, "Document": str(document_id), "FileName": source.file_name,
                            "FileSize": source.size})
            LOG.info("%s: attachment %s added", describe, source.describe())
        self.tally.attachments_created += 1
        return True, ident

    @property
    def dry_run(self) -> bool:
        return self.writer.dry_run

    def _find_new(self, division: int, document_id: Any, source: AttachmentSource,
                  known: set[str]) -> dict | None:
        rows = self.writer.find(self.endpoint, division, [self.document_field, self.name_field],  # type: ignore
                                [(_guid_key(document_id), source.file_name)], _ATTACHMENT_SELECT)
        for row in rows:
            if (str(row.get("ID")) not in known and _size_of(row) == source.size
                    and str(row.get("FileName") or "").casefold() == source.file_name.casefold()):
                return row
        return None


def _versions(known: Collection[Sequence] | None) -> set[tuple[int, str]]:
    out = set()
    for version in known or ():
        try:
            out.add((int(version[0]), str(version[1])))
        except (TypeError, ValueError, IndexError):
            continue
    return out


def known_files(item: Item) -> dict[str, list[list]]:
    """The contents per file name the ledger remembers for this record (copied, to be extended)."""
    files = (item.ledger_entry.extra.get("files") if item.ledger_entry else None) or {}
    if not isinstance(files, dict):
        return {}
    return {str(name): [list(v) for v in versions if isinstance(v, (list, tuple)) and len(v) == 2]
            for name, versions in files.items() if isinstance(versions, list)}


def remember_file(files: dict[str, list[list]], source: AttachmentSource) -> None:
    """Note that ``source``'s content is now under its name on the record's document in Exact."""
    version = [source.size, source.sha256]
    versions = [v for v in files.get(source.file_name.casefold(), []) if v != version]
    files[source.file_name.casefold()] = (versions + [version])[-MAX_FILE_VERSIONS:]


class DocumentsUpserter(EntityUpserter):
    """Documents upsert on their natural key; then their files are added (one lookup per batch)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.attachments = AttachmentWriter(self.writer, self.tally)

    def unchanged_by_ledger(self, item: Item) -> None:
        super().unchanged_by_ledger(item)
        self.tally.attachments_skipped += len(item.attachments)

    def written(self, division: int, item: Item) -> None:
        if not item.attachments:  # else once its files are there too (after_division)
            super().written(division, item)

    def after_division(self, division: int, items: list[Item]) -> None:
        with_files = [i for i in items if i.attachments and i.row is not None]
        if not with_files:
            return
        earlier = [i.row[self.pk] for i in with_files  # type: ignore[index]
                   if i.outcome != "created" and i.row.get(self.pk)]  # type: ignore[union-attr]
        present = self.attachments.existing(division, earlier)
        for item in with_files:
            document_id = item.row.get(self.pk)  # type: ignore[union-attr]
            if not document_id:  # dry run: the document would be new, so would all its files
                for source in item.attachments:
                    LOG.info("%s: (dry run) attachment %s would be added", self.describe(item), source.describe())
                self.tally.attachments_created += len(item.attachments)
                continue
            files = present.setdefault(_guid_key(document_id), [])
            item.files = known_files(item)
            for source in item.attachments:
                if self.refused(item, ATTACHMENTS_PATH):
                    break
                try:
                    self.attachments.add(division, document_id, source, files, self.describe(item),
                                         known=item.files.get(source.file_name.casefold()))
                except BadValue as exc:
                    self.reject(item, f"attachment {source.file_name!r}: {exc}")
                    break
                except ExactAPIError as exc:
                    self.handle_exact_error(item, exc, f"attachment {source.file_name!r}", ATTACHMENTS_PATH)
                    break
                remember_file(item.files, source)
            else:
                EntityUpserter.written(self, division, item)


class AttachmentsUpserter(BaseUpserter):
    """The ``document_attachments`` stream: files for documents named by ID or by Subject."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.attachments = AttachmentWriter(self.writer, self.tally)
        self.documents = endpoints()["documents/Documents"]
        self._document_ids: dict[tuple[int, str], str] = {}

    def key_of(self, item: Item) -> dict[str, Any] | None:
        key = {}
        if item.values.get("Document"):
            key["Document"] = item.values["Document"]
        elif item.document_subject:
            key["DocumentSubject"] = item.document_subject
        if item.attachments:
            key["FileName"] = item.attachments[0].file_name
        return key or None

    def describe(self, item: Item) -> str:
        document = item.values.get("Document") or f"Subject={item.document_subject!r}"
        return f"{self.stream} document {document} (division {item.division})"

    def ledger_identity(self, item: Item) -> tuple[str, Any] | None:
        source = item.attachments[0]
        document = (("Document", key_part("Edm.Guid", item.values["Document"])) if item.values.get("Document")
                    else ("DocumentSubject", key_part("Edm.String", item.document_subject)))
        key = record_key([document, ("FileName", source.file_name.casefold())])
        return key, {"endpoint": ATTACHMENTS_PATH, "document": list(document), "file": source.fingerprint()}

    def unchanged_by_ledger(self, item: Item) -> None:
        super().unchanged_by_ledger(item)
        self.tally.attachments_skipped += 1

    def process_division(self, division: int, items: list[Item]) -> None:
        self._resolve_subjects(division, items)
        live = [i for i in items if not i.rejected]
        present = self.attachments.existing(division, {i.values["Document"] for i in live})
        for item in live:
            if self.refused(item):
                continue
            files = present.setdefault(_guid_key(item.values["Document"]), [])
            source = item.attachments[0]
            item.files = known_files(item)
            try:
                uploaded, ident = self.attachments.add(division, item.values["Document"], source, files,
                                                       self.describe(item),
                                                       known=item.files.get(source.file_name.casefold()))
                if uploaded:
                    item.outcome = "created"
                    self.tally.created += 1
                else:
                    item.outcome = "unchanged"
                    self.tally.unchanged += 1
                remember_file(item.files, source)
                self.settle(division, item, ident)
            except BadValue as exc:
                self.reject(item, f"attachment {source.file_name!r}: {exc}")
            except ExactAPIError as exc:
                self.handle_exact_error(item, exc)

    def _resolve_subjects(self, division: int, items: list[Item]) -> None:
        wanted = [i for i in items if not i.values.get("Document")]
        subject_field = self.documents.field("Subject")
        missing = {key_part("Edm.String", i.document_subject): i.document_subject for i in wanted
                   if (division, key_part("Edm.String", i.document_subject)) not in self._document_ids}
        if missing:
            found: dict[str, list[str]] = {}
            for row in self.writer.find(self.documents, division, [subject_field],  # type: ignore[list-item]
                                        [(s,) for s in missing.values()], ["ID", "Subject"]):
                found.setdefault(key_part("Edm.String", row.get("Subject")), []).append(str(row["ID"]))
            for subject, ids in found.items():
                self._document_ids[(division, subject)] = ids[0] if len(ids) == 1 else ""
        for item in wanted:
            document = self._document_ids.get((division, key_part("Edm.String", item.document_subject)))
            if document is None:
                self.reject(item, f"no document with Subject {item.document_subject!r} in division {division}")
            elif document == "":
                self.reject(item, f"several documents have Subject {item.document_subject!r} in division "
                                  f"{division}; name the Document by its ID")
            else:
                item.values["Document"] = document

