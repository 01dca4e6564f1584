"""The endpoint metadata, shaped for serving.

Exact serves one entity through up to three APIs (``crm/Accounts``,
``bulk/CRM/Accounts``, ``sync/CRM/Accounts``). An :class:`EntityGroup` is that
entity: one row layout (the union of the endpoints' fields plus the rowversion)
shared by every endpoint that shows it, so a write through one is seen by all.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

DEFAULT_METADATA = Path(__file__).resolve().parents[1] / "exactonline_api" / "data" / "endpoints.json"

ROWVERSION = "Timestamp"
NO_DIVISION_PATHS = frozenset({"current/Me", "system/Users"})
DIVISION_LIST_PATHS = frozenset({"system/Divisions", "system/AllDivisions", "hrm/Divisions"})
SPECIAL_PATHS = NO_DIVISION_PATHS | DIVISION_LIST_PATHS | {"sync/Deleted", "read/sync/Sync/SyncTimestamp"}
NUMERIC_TYPES = frozenset({"Edm.Byte", "Edm.Int16", "Edm.Int32", "Edm.Int64", "Edm.Double", "Edm.Decimal", "Edm.Single"})
INTEGER_TYPES = frozenset({"Edm.Byte", "Edm.Int16", "Edm.Int32", "Edm.Int64"})


@dataclass(frozen=True)
class Field:
    name: str
    type: str
    post: bool | None = None
    put: bool | None = None

    @property
    def is_nav(self) -> bool:
        """Navigation (line collections) and the odd complex type: never stored on the row."""
        return not self.type.startswith("Edm.")

    @property
    def nav_target(self) -> str | None:
        match = re.match(r"^Collection\((\w+)\)$", self.type)
        return match.group(1) if match else None


@dataclass(eq=False)
class Endpoint:
    path: str
    kind: str
    name: str
    service: str
    beta: bool
    primary_key: tuple[str, ...]
    methods: dict[str, bool | None]
    page_size: int
    fields: list[Field]
    requires_select: bool = False
    mandatory_filter_fields: tuple[str, ...] = ()
    mandatory_on_post: tuple[str, ...] = ()
    entity_id_field: str | None = None
    deleted_entity_types: tuple[int, ...] = ()
    standard_counterpart: str | None = None
    deprecated: bool = False
    group: "EntityGroup | None" = None

    @cached_property
    def field_map(self) -> dict[str, Field]:
        return {f.name: f for f in self.fields}

    @cached_property
    def data_fields(self) -> list[Field]:
        return [f for f in self.fields if not f.is_nav]

    @cached_property
    def nav_fields(self) -> dict[str, Field]:
        return {f.name: f for f in self.fields if f.is_nav}

    @property
    def has_division(self) -> bool:
        return self.path not in NO_DIVISION_PATHS

    @property
    def ordered_by_rowversion(self) -> bool:
        return self.kind == "sync"

    @cached_property
    def type_name(self) -> str:
        """The ``__metadata.type``: Exact's model name, singular."""
        singular = re.sub(r"ies$", "y", self.name) if self.name.endswith("ies") else re.sub(r"s$", "", self.name)
        prefix = {"sync": "Sync.", "bulk": "Bulk.", "read": "Read."}.get(self.kind, "")
        service = "System" if self.service == "current" else self.service.capitalize()
        return f"Exact.Web.Api.Models.{prefix}{service}.{singular}"

    def allows(self, method: str) -> bool | None:
        return self.methods.get(method)


@dataclass(eq=False)
class EntityGroup:
    """One entity, stored once per division and shown by its endpoints."""

    key: str
    endpoints: list[Endpoint] = field(default_factory=list)
    identity: tuple[str, ...] = ()
    fields: list[Field] = field(default_factory=list)
    index: dict[str, int] = field(default_factory=dict)
    # parent nav field -> (child group, foreign key field on the child)
    children: dict[str, tuple["EntityGroup", str]] = field(default_factory=dict)
    parents: list[tuple["EntityGroup", str]] = field(default_factory=list)  # (header, foreign key here)

    @property
    def ts_index(self) -> int:
        return self.index[ROWVERSION]

    @cached_property
    def types(self) -> dict[str, str]:
        return {f.name: f.type for f in self.fields}

    @cached_property
    def identity_types(self) -> tuple[str, ...]:
        return tuple(self.types[name] for name in self.identity)

    @cached_property
    def sync_endpoints(self) -> list[Endpoint]:
        return [e for e in self.endpoints if e.kind == "sync"]

    @cached_property
    def deleted_entity_types(self) -> tuple[int, ...]:
        found: list[int] = []
        for endpoint in self.sync_endpoints:
            found.extend(t for t in endpoint.deleted_entity_types if t not in found)
        return tuple(found)

    @cached_property
    def primary(self) -> Endpoint:
        """The endpoint whose name speaks for the group (standard first)."""
        order = {"standard": 0, "read": 1, "bulk": 2, "sync": 3}
        return min(self.endpoints, key=lambda e: order.get(e.kind, 9))


def _endpoint(raw: dict) -> Endpoint:
    return Endpoint(
        path=raw["path"],
        kind=raw["kind"],
        name=raw["name"],
        service=raw.get("service", ""),
        beta=bool(raw.get("beta")),
        primary_key=tuple(raw.get("primary_key") or ()),
        methods=dict(raw["methods"]),
        page_size=int(raw.get("page_size") or 60),
        fields=[Field(f["name"], f["type"], f.get("post"), f.get("put")) for f in raw["fields"]],
        requires_select=bool(raw.get("requires_select")),
        mandatory_filter_fields=tuple(raw.get("mandatory_filter_fields") or ()),
        mandatory_on_post=tuple(raw.get("mandatory_on_post") or ()),
        entity_id_field=raw.get("entity_id_field"),
        deleted_entity_types=tuple(raw.get("deleted_entity_types") or ()),
        standard_counterpart=raw.get("standard_counterpart"),
        deprecated=bool(raw.get("deprecated")),
    )


def _group_key(endpoint: Endpoint, paths: set[str]) -> str:
    if endpoint.kind in ("sync", "bulk"):
        if endpoint.standard_counterpart in paths:
            return endpoint.standard_counterpart
        # No standard twin: the sync and bulk endpoints of one entity share the tail.
        return "~" + endpoint.path.split("/", 1)[1].lower()
    return endpoint.path


_REGISTRIES: dict[str, "Registry"] = {}


class Registry:
    """All endpoints by path, grouped into entities."""

    def __init__(self, path: Path | str | None = None) -> None:
        raw = json.loads(Path(path or DEFAULT_METADATA).read_text())
        self.endpoints: dict[str, Endpoint] = {}
        for item in raw["endpoints"]:
            endpoint = _endpoint(item)
            self.endpoints[endpoint.path] = endpoint
        self.deleted_entity_types = {
            row["EntityType"]: row.get("sync_endpoint") for row in raw.get("deleted_entity_types", [])
        }
        self.groups: dict[str, EntityGroup] = {}
        paths = set(self.endpoints)
        for endpoint in self.endpoints.values():
            key = _group_key(endpoint, paths)
            group = self.groups.setdefault(key, EntityGroup(key))
            group.endpoints.append(endpoint)
            endpoint.group = group
        for group in self.groups.values():
            self._layout(group)
        for group in self.groups.values():
            self._link_children(group)

    @staticmethod
    def _layout(group: EntityGroup) -> None:
        primary = group.primary
        if primary.kind == "sync":
            identity = (primary.entity_id_field or "ID",)
        else:
            identity = primary.primary_key or (primary.data_fields[0].name,)
        seen: dict[str, Field] = {}
        for endpoint in sorted(group.endpoints, key=lambda e: e is not primary):
            for f in endpoint.data_fields:
                if f.name not in seen:
                    seen[f.name] = f
        for name in identity:  # a few function endpoints name a key they do not list
            seen.setdefault(name, Field(name, "Edm.Guid"))
        # The rowversion lives on every row (sync endpoints show it, others do not).
        seen.setdefault(ROWVERSION, Field(ROWVERSION, "Edm.Int64"))
        group.identity = identity
        group.fields = list(seen.values())
        group.index = {f.name: i for i, f in enumerate(group.fields)}

    def _link_children(self, group: EntityGroup) -> None:
        """Map ``Collection(SalesInvoiceLine)`` to the line entity and its foreign key."""
        parent = group.primary
        for nav in parent.nav_fields.values():
            target = nav.nav_target
            if not target:
                continue
            child = self._find_child(parent, nav.name, target)
            if child is None:
                continue
            fk = self._foreign_key(group, child)
            if fk:
                group.children[nav.name] = (child, fk)
                if child is not group and (group, fk) not in child.parents:
                    child.parents.append((group, fk))

    def _find_child(self, parent: Endpoint, nav: str, target: str) -> EntityGroup | None:
        plural = target[:-1] + "ies" if target.endswith("y") else target + "s"
        candidates = [f"{parent.service}/{nav}", f"{parent.service}/{plural}", f"{parent.service}/{target}"]
        candidates += [p for p in self.endpoints if p.endswith("/" + plural) and self.endpoints[p].kind == "standard"]
        for path in candidates:
            endpoint = self.endpoints.get(path)
            if endpoint is not None and endpoint.group is not None:
                return endpoint.group
        return None

    @staticmethod
    def _foreign_key(parent: EntityGroup, child: EntityGroup) -> str | None:
        if len(parent.identity) != 1:
            return None
        key = parent.identity[0]
        parent_type = parent.types[key]
        singular = re.sub(r"ies$", "y", parent.primary.name) if parent.primary.name.endswith("ies") \
            else re.sub(r"s$", "", parent.primary.name)  # Documents -> Document
        last_word = re.findall(r"[A-Z][a-z]*", singular)[-1:] or [singular]
        # SalesInvoices -> InvoiceID, GoodsReceipts -> GoodsReceiptID, PurchaseReturns -> EntryID
        names = [key] if key != "ID" else []
        names += [singular + "ID", singular, last_word[0] + "ID", "EntryID"]
        for name in names:
            if child.types.get(name) == parent_type and name not in child.identity:
                return name
        return None

    @classmethod
    def shared(cls, path: Path | str | None = None) -> "Registry":
        """One registry per metadata file per process: it is read-only once built."""
        key = str(Path(path or DEFAULT_METADATA).resolve())
        registry = _REGISTRIES.get(key)
        if registry is None:
            registry = _REGISTRIES[key] = cls(key)
        return registry

    def endpoint(self, path: str) -> Endpoint | None:
        return self.endpoints.get(path)

    def group_for(self, path: str) -> EntityGroup | None:
        endpoint = self.endpoints.get(path)
        return endpoint.group if endpoint else None
