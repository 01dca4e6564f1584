"""Per-division entity tables with Exact's rowversion semantics.

Every insert or update takes the division's next rowversion (``Timestamp``) and
sets ``Modified``; every delete of an entity that a sync endpoint covers writes
a ``sync/Deleted`` row from the same rowversion sequence. Tables are generated
on first use, but each entity's rowversion block is fixed up front so the data
is the same whatever order tests touch it in.
"""

from __future__ import annotations

import bisect
import threading
import uuid
from datetime import date
from typing import Any, Iterator

from . import generate as gen
from .knobs import VOLUME_ALIASES, Knobs
from .metadata import ROWVERSION, EntityGroup, Registry
from .timeutil import Clock, ms_date, ms_of, utc_to_local_ms

DELETED = "sync/Deleted"
USER_ID = "6d3c6f0a-5b1e-4b52-9a55-2c0e8f1d7a01"
USER_NAME = "Sandra Sandbox"


class StoreError(Exception):
    """A mutation that cannot be done; ``status`` says how the API should answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _sort_key(value: Any) -> Any:
    return value if not isinstance(value, tuple) else tuple("" if v is None else v for v in value)


class Table:
    """One entity in one division: rows by identity, plus key and rowversion order."""

    def __init__(self, group: EntityGroup) -> None:
        self.group = group
        self.rows: dict[Any, list] = {}
        self.version = 0
        self._id_slots = [group.index[name] for name in group.identity]
        self._ts_slot = group.index[ROWVERSION]
        self._sorted: list | None = []
        self._ts: list[int] = []  # append-only; an entry is stale once its row moved on
        self._ts_keys: list[Any] = []
        self._fk_cache: dict[str, tuple[int, dict]] = {}

    def key_of(self, row: list) -> Any:
        if len(self._id_slots) == 1:
            return row[self._id_slots[0]]
        return tuple(row[slot] for slot in self._id_slots)

    def load(self, rows: list[list]) -> None:
        """Rows in rowversion order, fresh from the generator."""
        for row in rows:
            key = self.key_of(row)
            self.rows[key] = row
            self._ts.append(row[self._ts_slot])
            self._ts_keys.append(key)
        self._sorted = None
        self.version += 1

    def put(self, row: list) -> None:
        key = self.key_of(row)
        is_new = key not in self.rows
        self.rows[key] = row
        if is_new and self._sorted is not None:
            bisect.insort(self._sorted, _sort_key(key))
        self._ts.append(row[self._ts_slot])
        self._ts_keys.append(key)
        self.version += 1
        if len(self._ts) > 2 * len(self.rows) + 1000:
            self._reindex_ts()

    def remove(self, key: Any) -> list | None:
        row = self.rows.pop(key, None)
        if row is not None:
            if self._sorted is not None:
                position = bisect.bisect_left(self._sorted, _sort_key(key))
                if position < len(self._sorted) and self._sorted[position] == _sort_key(key):
                    del self._sorted[position]
            self.version += 1
        return row

    def _reindex_ts(self) -> None:
        ordered = sorted(self.rows.items(), key=lambda item: item[1][self._ts_slot])
        self._ts = [row[self._ts_slot] for _, row in ordered]
        self._ts_keys = [key for key, _ in ordered]

    def sorted_keys(self) -> list:
        if self._sorted is None:
            self._sorted = sorted(_sort_key(k) for k in self.rows)
        return self._sorted

    def by_key(self, after: Any = None) -> Iterator[list]:
        keys = self.sorted_keys()
        start = 0 if after is None else bisect.bisect_right(keys, _sort_key(after))
        rows = self.rows
        for position in range(start, len(keys)):
            key = keys[position]
            row = rows.get(key)
            if row is None and isinstance(key, tuple):
                row = rows.get(tuple(None if v == "" else v for v in key))
            if row is not None:
                yield row

    def by_rowversion(self, after: int | None = None) -> Iterator[list]:
        """Rows with Timestamp > after, oldest first, each once (stale entries skipped)."""
        ts_list, keys, rows, slot = self._ts, self._ts_keys, self.rows, self._ts_slot
        start = 0 if after is None else bisect.bisect_right(ts_list, after)
        for position in range(start, len(ts_list)):
            row = rows.get(keys[position])
            if row is not None and row[slot] == ts_list[position]:
                yield row

    def children_by(self, fk: str) -> dict[Any, list[list]]:
        """Rows grouped by a foreign key value (for $expand and cascades), cached per version."""
        cached = self._fk_cache.get(fk)
        if cached and cached[0] == self.version:
            return cached[1]
        slot = self.group.index[fk]
        grouped: dict[Any, list[list]] = {}
        for row in self.by_key():
            grouped.setdefault(row[slot], []).append(row)
        self._fk_cache[fk] = (self.version, grouped)
        return grouped

    def renumber(self, mapping: dict[int, int]) -> None:
        for row in self.rows.values():
            row[self._ts_slot] = mapping[row[self._ts_slot]]
        self._reindex_ts()
        self.version += 1


class Division:
    """All entities of one division and its rowversion sequence."""

    def __init__(self, store: "Store", code: int) -> None:
        self.store = store
        self.code = code
        self.tables: dict[str, Table] = {}
        # Generators see only generated rows, so data never depends on what tests changed first.
        self.generated: dict[str, list[list]] = {}
        self.attachments: dict[str, bytes] = {}
        self.counts, self.blocks, total = store.plan()
        self.next_ts = store.knobs.rowversion_base + total
        base = store.knobs.rowversion_base
        start_ms = _date_ms(store.knobs.history_start)
        span_ms = int(store.knobs.history_days) * 86_400_000
        self.context = gen.GenContext(
            seed=store.knobs.seed, division=code, history_start_ms=start_ms,
            step_ms=max(1, span_ms // max(total, 1)), user_id=USER_ID, user_name=USER_NAME,
            base_url=store.base_url, rows_of=self.generated_rows,
            index_of=lambda key: store.registry.groups[key].index, rowversion_base=base,
            pad_codes=store.knobs.pad_account_codes,
            today_ms=store.now_local_ms() // 86_400_000 * 86_400_000,
            history_days=int(store.knobs.history_days),
        )

    def table(self, group_key: str) -> Table:
        table = self.tables.get(group_key)
        if table is None:
            group = self.store.registry.groups[group_key]
            table = Table(group)
            self.tables[group_key] = table  # before generating: generators may look at their own kin
            count = self.counts.get(group_key, 0)
            rows = gen.generate(group, count, self.blocks[group_key], self.context) if count else []
            self.generated[group_key] = rows
            table.load(rows)
        return table

    def generated_rows(self, group_key: str) -> list[list]:
        self.table(group_key)
        return self.generated[group_key]

    def take_ts(self) -> int:
        ts = self.next_ts
        self.next_ts += 1
        return ts

    def materialize_all(self) -> None:
        for key in self.store.registry.groups:
            self.table(key)

    def renumber_rowversions(self, start: int = 1) -> None:
        """A division move: Exact's rowversions restart in the new database."""
        self.materialize_all()
        stamps = sorted(ts for t in self.tables.values() for ts in (r[t.group.ts_index] for r in t.rows.values()))
        mapping = {old: start + i for i, old in enumerate(stamps)}
        for table in self.tables.values():
            table.renumber(mapping)
        self.next_ts = start + len(stamps)


def _date_ms(text: str) -> int:
    day = date.fromisoformat(str(text))
    return (day - date(1970, 1, 1)).days * 86_400_000


class Store:
    """Every division's data, the shared lock, and the mutations Exact allows."""

    def __init__(self, registry: Registry, knobs: Knobs, clock: Clock, volumes: dict[str, int] | None = None):
        self.registry = registry
        self.knobs = knobs
        self.clock = clock
        self.lock = threading.RLock()
        self.base_url = ""
        self.volumes = self.resolve_volumes(volumes or {})
        self.divisions: dict[int, Division] = {}
        self.division_overrides: dict[int, dict[str, Any]] = {}
        self._plan: tuple | None = None

    def resolve_volumes(self, volumes: dict[str, int]) -> dict[str, int]:
        resolved = {}
        for name, count in volumes.items():
            path = VOLUME_ALIASES.get(name, name)
            group = self.registry.group_for(path) or self.registry.groups.get(path)
            if group is None:
                raise KeyError(f"unknown entity for --volume: {name}")
            resolved[group.key] = int(count)
        return resolved

    def plan(self) -> tuple[dict[str, int], dict[str, int], int]:
        """Row counts and rowversion blocks for every entity (the same in every division)."""
        if self._plan is None:
            counts, blocks, cursor = {}, {}, self.knobs.rowversion_base
            for key in sorted(self.registry.groups):
                group = self.registry.groups[key]
                if key in gen.NOT_GENERATED or group.primary.path in gen.NOT_GENERATED:
                    continue
                if not any(e.allows("GET") for e in group.endpoints):
                    continue
                count = self.volumes.get(key, gen.DEFAULT_VOLUMES.get(group.primary.path, self.knobs.generic_rows))
                counts[key], blocks[key] = count, cursor
                cursor += count
            self._plan = (counts, blocks, cursor - self.knobs.rowversion_base)
        return self._plan

    def reset(self, volumes: dict[str, int] | None = None) -> None:
        with self.lock:
            if volumes is not None:
                self.volumes.update(self.resolve_volumes(volumes))
            self.divisions.clear()
            self.division_overrides.clear()
            self._plan = None

    def division(self, code: int) -> Division:
        division = self.divisions.get(code)
        if division is None:
            division = self.divisions[code] = Division(self, code)
        return division

    def table(self, code: int, group_key: str) -> Table:
        return self.division(code).table(group_key)

    def now_local_ms(self) -> int:
        return utc_to_local_ms(self.clock.now())

    # -- mutations ---------------------------------------------------------

    def insert(self, code: int, group: EntityGroup, values: dict[str, Any], *, stamp_times: bool = True) -> list:
        """A new row from wire-form values; missing fields are null, the key is made if absent."""
        with self.lock:
            division = self.division(code)
            table = division.table(group.key)
            row: list = [None] * len(group.fields)
            for name, value in values.items():
                row[group.index[name]] = value
            for name, edm in zip(group.identity, group.identity_types):
                slot = group.index[name]
                if row[slot] is None:
                    row[slot] = self._new_key(table, name, edm, code)
            key = table.key_of(row)
            if key in table.rows:
                raise StoreError(f"An entity with key {key} already exists.")
            self._stamp(division, group, row, values, created=True, stamp_times=stamp_times)
            table.put(row)
            return row

    def update(self, code: int, group: EntityGroup, key: Any, changes: dict[str, Any], *,
               stamp_times: bool = True) -> list:
        with self.lock:
            division = self.division(code)
            table = division.table(group.key)
            old = table.rows.get(key)
            if old is None:
                raise StoreError("Resource not found for the segment.", 404)
            row = old.copy()  # pages already rendered keep their snapshot
            for name, value in changes.items():
                row[group.index[name]] = value
            self._stamp(division, group, row, changes, created=False, stamp_times=stamp_times)
            table.put(row)
            return row

    def delete(self, code: int, group: EntityGroup, key: Any) -> list[list]:
        """Remove a row (and, with cascades, its lines); returns the sync/Deleted rows written."""
        with self.lock:
            division = self.division(code)
            table = division.table(group.key)
            row = table.remove(key)
            if row is None:
                raise StoreError("Resource not found for the segment.", 404)
            written = []
            if self.knobs.cascade_deletes:
                for child_group, fk in self.cascade_children(group):
                    child = division.table(child_group.key)
                    for child_row in list(child.children_by(fk).get(key, [])):
                        written += self.delete(code, child_group, child.key_of(child_row))
            division.attachments.pop(key, None)
            written += self._log_delete(division, group, key)
            return written

    def cascade_children(self, group: EntityGroup) -> list[tuple[EntityGroup, str]]:
        children = list(group.children.values())
        if group.key == "documents/Documents":  # no nav property in the metadata, but Exact cascades
            children.append((self.registry.groups["documents/DocumentAttachments"], "Document"))
        return children

    def _log_delete(self, division: Division, group: EntityGroup, key: Any) -> list[list]:
        if not group.deleted_entity_types or isinstance(key, tuple):
            return []
        deleted_group = self.registry.group_for(DELETED)
        table = division.table(deleted_group.key)
        written = []
        for entity_type in group.deleted_entity_types:
            values = {"ID": str(uuid.uuid4()), "EntityKey": key, "EntityType": entity_type,
                      "Division": division.code, "DeletedBy": USER_ID,
                      "DeletedDate": ms_date(self.now_local_ms())}
            row = [None] * len(deleted_group.fields)
            for name, value in values.items():
                row[deleted_group.index[name]] = value
            row[deleted_group.ts_index] = division.take_ts()
            table.put(row)
            written.append(row)
        return written

    def _stamp(self, division: Division, group: EntityGroup, row: list, given: dict, *, created: bool,
               stamp_times: bool) -> None:
        row[group.ts_index] = division.take_ts()
        now = ms_date(self.now_local_ms())
        index = group.index
        if "Division" in index and group.types["Division"] in ("Edm.Int32", "Edm.Int64"):
            row[index["Division"]] = division.code
        if not stamp_times:
            return
        for name, when in (("Modified", True), ("Created", created)):
            if when and name in index and group.types[name] == "Edm.DateTime" and name not in given:
                row[index[name]] = now
        for name, value in (("Modifier", USER_ID), ("ModifierFullName", USER_NAME)):
            if name in index and name not in given:
                row[index[name]] = value
        if created:
            for name, value in (("Creator", USER_ID), ("CreatorFullName", USER_NAME)):
                if name in index and name not in given:
                    row[index[name]] = value

    def _new_key(self, table: Table, name: str, edm: str, code: int) -> Any:
        if name == "Division":
            return code
        if edm == "Edm.Guid":
            return str(uuid.uuid4())
        if edm in ("Edm.Int32", "Edm.Int64", "Edm.Int16", "Edm.Byte"):
            slot = table.group.index[name]
            return max((r[slot] for r in table.rows.values() if isinstance(r[slot], int)), default=0) + 1
        if edm == "Edm.String":
            return str(len(table.rows) + 1)
        raise StoreError(f"The key property '{name}' must be given.")

    # -- queries that are not OData ----------------------------------------

    def sync_timestamp(self, code: int, group: EntityGroup, before_local_ms: int) -> int:
        """Largest rowversion among rows modified before a local time (1 when none)."""
        with self.lock:
            table = self.table(code, group.key)
            ts_slot = group.ts_index
            date_name = "DeletedDate" if group is self.registry.group_for(DELETED) else "Modified"
            slot = group.index.get(date_name)
            best = 1
            if slot is None:
                return best
            for row in table.rows.values():
                modified = ms_of(row[slot])
                if modified is not None and modified < before_local_ms and row[ts_slot] > best:
                    best = row[ts_slot]
            return best
