"""The upsert steps: how a batch of one stream becomes lookups and writes, per division.

Exact has no upsert, so every batch goes through the same steps:

0. shaping (shape.py) turns each record into Exact's field values; a record that cannot be shaped
   (a value that cannot be converted, a file that cannot be read, a key too long for a lookup URL)
   is rejected with its reason and the others go on: one record never costs the batch;
1. records the write ledger (ledger.py) knows unchanged since the target last wrote them are done
   without a call, and records Exact refused before, unchanged since, are rejected again with
   Exact's earlier message and no call; the first other record of the run triggers the division
   check (current/Me, plus the division list when a record names another division);
2. one filtered GET per URL-sized chunk finds the existing records by natural key (connector.py);
3. a record without a match is POSTed; a record with one match is compared field by field and PUT
   with only the fields that differ; an unchanged record gets no write;
4. Exact's refusals are judged by refusals.py: the record goes to the reject file with Exact's
   message, the batch goes on; once this app's share of Exact's hourly error limit is spent on an
   endpoint (exactonline_api.budget), the remaining records of that endpoint are rejected as
   "not sent" with the time to retry, without a call.

Documents and attachments add their files after their records (documents.py).
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

from exactonline_api import odata
from exactonline_api.errors import EndpointBlocked, ExactAPIError
from exactonline_api.registry import Endpoint, Field
from target_exactonline.accounts import ACCOUNTS_PATH, AccountCodes
from target_exactonline.connector import ExactWriter
from target_exactonline.fields import (
    INTEGER,
    NUMBER,
    BadValue,
    comparable,
    is_empty,
    key_part,
    same,
    squash,
)
from target_exactonline.ledger import Entry, Ledger, fingerprint, record_key
from target_exactonline.records import Item, RecordRejected, Tally
from target_exactonline.refusals import Refusals
from target_exactonline.rejects import RejectFile

LOG = logging.getLogger("target_exactonline.upsert")

DRY_RUN_ID = "00000000-0000-0000-0000-000000000000"
NUMERIC = INTEGER | NUMBER
# Shaping problems that concern one record (a bug in a value's conversion included): rejected, not fatal.
SHAPING_ERRORS = (RecordRejected, BadValue, ValueError, TypeError, KeyError)


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
        accounts: AccountCodes | None = None,
        refusals: Refusals | None = None,
        resend_refused: bool = False,
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
        # Shared by every stream of the run (the target makes one of each).
        self.accounts = accounts or AccountCodes(writer)
        self.refusals = refusals or Refusals()
        self.resend_refused = resend_refused

    @property
    def dry_run(self) -> bool:
        return self.writer.dry_run

    def key_of(self, item: Item) -> dict[str, Any] | None:
        return None

    def reject(self, item: Item, reason: str, *, not_sent: bool = False) -> None:
        if item.rejected:
            return
        item.rejected = True
        self.tally.rejected += 1
        self.tally.not_sent += not_sent
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
            except SHAPING_ERRORS as exc:
                reason = exc.reason if isinstance(exc, RecordRejected) else str(exc) or type(exc).__name__
                self.reject(Item(record=record), reason)
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
                        self.reject(item, problems[division], not_sent=True)
                live = [i for i in group if not i.rejected]
                if not live:
                    continue
                if not self.guarded(live, functools.partial(self.accounts.resolve, division, live, self.reject),
                                    "its AccountCode lookup", ACCOUNTS_PATH):
                    continue
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
        keys = [i.ledger_key for i in items if i.ledger_key and not i.rejected]
        entries = self.ledger.lookup(self.stream, division, keys)
        refused = {} if self.resend_refused else self.ledger.refusals(self.stream, division, keys)
        pending = []
        for item in items:
            if item.rejected:
                continue
            earlier = refused.get(item.ledger_key) if item.ledger_key else None
            if earlier is not None and earlier.fingerprint == item.fingerprint:
                when = datetime.fromtimestamp(earlier.refused_at, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
                self.reject(item, f"not sent again: unchanged since Exact refused it on {when} ({earlier.reason}); "
                                  "change the record, or set resend_refused, to send it again", not_sent=True)
                continue
            entry = entries.get(item.ledger_key) if item.ledger_key else None
            item.ledger_entry = entry
            if (self.trust_ledger and entry is not None and entry.fingerprint == item.fingerprint
                    and self._same_account(division, item, entry)):
                self.unchanged_by_ledger(item)
            else:
                pending.append(item)
        known = sum(1 for i in items if i.outcome == "unchanged")
        if known:
            LOG.info("%s (division %s): %d record(s) unchanged since the target last wrote them (ledger %s); "
                     "not looked up", self.stream, division, known, self.ledger.describe())
        return pending

    def _same_account(self, division: int, item: Item, entry: Entry) -> bool:
        """False when this run found the record's AccountCode on another account than the ledger's."""
        if item.account_code is None:
            return True
        now = self.accounts.get(division, item.account_code)
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

    def guarded(self, items: list[Item], call: Callable[[], Any], what: str, path: str | None = None) -> bool:
        """Run a lookup for ``items``; when Exact refuses it (or it may not be sent), reject them all."""
        try:
            call()
            return True
        except (ExactAPIError, EndpointBlocked) as exc:
            path = path or self.endpoint.path
            for item in items:
                self.handle_exact_error(item, exc, what, path, remember=False)
            return False

    def handle_exact_error(self, item: Item, exc: ExactAPIError | EndpointBlocked, what: str = "",
                           path: str | None = None, *, remember: bool = True) -> None:
        """A refusal of one record: reject it with Exact's message (refusals.py); anything else stops the run."""
        verdict = self.refusals.judge(exc, what=what or "it", division=item.division, path=path or self.endpoint.path)
        if (remember and verdict.remember and self.ledger is not None and item.ledger_key and item.fingerprint
                and item.division is not None):
            self.ledger.refuse(self.stream, item.division, item.ledger_key, item.fingerprint, verdict.reason)
        self.reject(item, verdict.reason, not_sent=verdict.not_sent)

    def refused(self, item: Item, path: str | None = None) -> bool:
        """Reject without a call when Exact already refused this division or endpoint in this run."""
        reason = self.refusals.closed(item.division, path or self.endpoint.path)
        if reason:
            self.reject(item, reason, not_sent=True)
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
        too_long: dict[tuple, int] = {}
        rows: list[dict] = []

        def lookup() -> None:
            rows.extend(self.writer.find(
                self.endpoint, division, self.key_fields,  # type: ignore[arg-type]
                [[item.values[n] for n in self.natural_key] for item in live], select,
                too_long=lambda key, length: too_long.setdefault(self.normal_key(dict(zip(self.natural_key, key))),
                                                                 length)))

        if not self.guarded(live, lookup, "the lookup of this batch"):
            return
        for item in live:
            length = too_long.get(self.normal_key(item.values))
            if length is not None:
                self.reject(item, f"natural key {', '.join(self.natural_key)} is too long to look up in Exact "
                                  f"({length} characters once URL-encoded; a URL holds at most "
                                  f"{odata.MAX_URL_LENGTH}): shorten it or choose other natural_keys.{self.stream}")
        live = [item for item in live if not item.rejected]
        index: dict[tuple, list[dict]] = {}
        for row in rows:
            index.setdefault(self.normal_key(row), []).append(row)
        remember_accounts = self.endpoint.path == ACCOUNTS_PATH
        if remember_accounts:
            self.accounts.note(division, rows)
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
                        self.accounts.note(division, [{"ID": DRY_RUN_ID, **item.row}] if self.dry_run
                                           else [item.row])
                self.written(division, item)
            except RecordRejected as exc:
                self.reject(item, exc.reason)
            except (ExactAPIError, EndpointBlocked) as exc:
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



def _empty_enough(edm: str, exact_value: Any) -> bool:
    """Whether Exact's value counts as empty for a record that leaves the field empty.

    An empty cell clears a text, date or reference in Exact, but cannot express "no" for a boolean,
    and a number Exact keeps at 0 is as empty as it gets; comparing those would PUT on every run.
    """
    if edm == "Edm.Boolean":
        return True
    normal = comparable(edm, exact_value)
    return normal is None or (edm in NUMERIC and normal == 0)


