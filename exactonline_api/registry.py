"""The entity registry: which streams exist and which Exact API serves each.

Everything here is derived from ``data/endpoints.json`` (facts copied from the
shared metadata by ``scripts/update_endpoints.py``). Adding an Exact entity
means adding its endpoint there; no class is written per entity.

The rules, in order of preference per entity (cheapest in API calls first):

* ``sync``: ``sync/...`` with ``Timestamp gt NL``, 1,000 rows a page, ordered.
* ``bulk``: ``bulk/...``, 1,000 rows a page, incremental on ``Modified``.
* ``parent``: a line collection without sync or bulk is read through its
  parent's standard endpoint with ``$expand``, 60 parents (with all their
  lines) a page, incremental on the parent's ``Modified``.
* ``standard``: 60 rows a page, incremental on ``Modified`` when it has one.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

from exactonline_api.datekinds import calendar_fields

SYNC, BULK, PARENT, STANDARD = "sync", "bulk", "parent", "standard"

# Standard endpoints that cannot be listed with a bare GET: functions and
# actions that need parameters, or URLs without a division.
NOT_LISTABLE = {
    "current/Me": "user endpoint without division; used by --test and the auth command",
    "system/Users": "no division in the URL; needs a license-level scope",
    "users/UserHasRights": "function: needs endpoint and action parameters",
    "customfield/CustomFields": "function: needs an entity parameter",
    "customfield/UpdateCustomField": "action endpoint (POST)",
    "crm/EmailWithSignOffQuotation": "action endpoint (POST)",
    "financial/ProcessReturn": "action endpoint (POST)",
    "inventory/FinishAssemblyOrder": "action endpoint (POST)",
    "salesorder/CompleteSalesOrder": "action endpoint (POST)",
    "salesorder/CompleteSalesOrderLine": "action endpoint (POST)",
    "payroll/PayrollTransactionsByPayrollYear": "needs a payroll year parameter",
    "crm/OptionalQuotationLineID": "collection only valid expanded inside a quotation",
}

# Sync endpoints that Exact deprecated in favour of a header/lines pair. They
# stay reachable as their own streams, deselected by default.
DEPRECATED_SYNC_SUFFIX = "_deprecated"

# The sync counterpart listed for cashflow/Receivables is really PaymentTerms,
# its own entity (receivables and payments come from bulk).
OWN_ENTITY_SYNC = {"sync/Cashflow/PaymentTerms"}

# The curated finance core that is selected when the user has not chosen.
DEFAULT_SELECTED = {
    "transaction_lines", "gl_accounts", "gl_classifications", "gl_account_classification_mappings",
    "accounts", "contacts", "addresses", "items", "sales_invoices", "sales_invoice_lines",
    "purchase_entries", "purchase_entry_lines", "sales_entries", "sales_entry_lines",
    "receivables", "payments", "payment_terms", "journals", "cost_centers", "cost_units",
    "divisions", "deleted", "financial_periods", "vat_codes", "documents", "document_attachments",
    "general_journal_entries", "general_journal_entry_lines", "bank_entries", "bank_entry_lines",
    "cash_entries", "cash_entry_lines", "currencies", "exchange_rates", "projects",
}

# Exact spells a few names in ways that snake_case would mangle.
NAME_OVERRIDES = {"hrm/Costcenters": "cost_centers", "hrm/Costunits": "cost_units",
                  "system/Divisions": "divisions"}

# An acronym ends before a capitalised word (GL|Accounts) but keeps a plural s (CLAs).
_SNAKE_1 = re.compile(r"([A-Z]+)([A-Z](?!s(?:[A-Z]|$))[a-z])")
_SNAKE_2 = re.compile(r"([a-z\d])([A-Z])")


def snake_case(name: str) -> str:
    """``GLAccounts`` -> ``gl_accounts``, ``ProjectWBS`` -> ``project_wbs``."""
    return _SNAKE_2.sub(r"\1_\2", _SNAKE_1.sub(r"\1_\2", name)).replace("/", "_").lower()


@dataclass(frozen=True)
class Field:
    name: str
    edm: str
    key: bool = False
    post: bool = False
    put: bool = False
    description: str = ""

    @property
    def is_navigation(self) -> bool:
        return not self.edm.startswith("Edm.")


@dataclass(frozen=True)
class Endpoint:
    """One Exact URL (``sync/CRM/Accounts``) and what Exact documents for it."""

    path: str
    kind: str
    name: str
    service: str
    primary_key: tuple[str, ...]
    methods: frozenset[str]
    page_size: int
    fields: tuple[Field, ...]
    deprecated: bool = False
    beta: bool = False
    requires_select: bool = False
    standard_counterpart: str | None = None
    entity_id_field: str | None = None
    mandatory_on_post: tuple[str, ...] = ()
    mandatory_filter_fields: tuple[str, ...] = ()

    @property
    def scalar_fields(self) -> tuple[Field, ...]:
        return tuple(f for f in self.fields if not f.is_navigation)

    def field(self, name: str) -> Field | None:
        return next((f for f in self.fields if f.name == name), None)

    def has(self, name: str) -> bool:
        return self.field(name) is not None

    def url_path(self, division: int | None) -> str:
        """The path below ``/api/v1/``; beta endpoints carry the division inside."""
        if self.path.startswith("beta/{division}/"):
            return self.path.replace("{division}", str(division))
        if division is None:
            return self.path
        return f"{division}/{self.path}"


@dataclass(frozen=True)
class ParentLink:
    """A line collection read through its parent with ``$expand``."""

    parent: Endpoint
    navigation: str


@dataclass(frozen=True)
class Entity:
    """One stream: an Exact entity and the endpoint chosen to read it."""

    stream_name: str
    api: str
    source: Endpoint
    fields: tuple[Field, ...]
    key: tuple[str, ...]
    replication_key: str | None
    standard: Endpoint | None = None
    sync: Endpoint | None = None
    bulk: Endpoint | None = None
    parent: ParentLink | None = None
    deleted_entity_type: int | None = None
    selected_by_default: bool = False
    alternatives: tuple[str, ...] = field(default=())
    # Edm.DateTime properties that are calendar dates (datekinds.py); the others are moments.
    calendar_dates: frozenset[str] = frozenset()

    @property
    def writable(self) -> Endpoint | None:
        """The endpoint that accepts POST/PUT for this entity, if any."""
        if self.standard and {"POST", "PUT"} & self.standard.methods:
            return self.standard
        return None


def _endpoint(raw: dict) -> Endpoint:
    return Endpoint(
        path=raw["path"],
        kind=raw["kind"],
        name=raw["name"],
        service=raw["service"],
        primary_key=tuple(raw.get("primary_key") or ()),
        methods=frozenset(m for m, ok in raw["methods"].items() if ok),
        page_size=int(raw.get("page_size") or 60),
        fields=tuple(
            Field(f["name"], f["type"], bool(f.get("key")), bool(f.get("post")),
                  bool(f.get("put")), f.get("description", ""))
            for f in raw["fields"]
        ),
        deprecated=bool(raw.get("deprecated")),
        beta=bool(raw.get("beta")),
        requires_select=bool(raw.get("requires_select")),
        standard_counterpart=raw.get("standard_counterpart"),
        entity_id_field=raw.get("entity_id_field"),
        mandatory_on_post=tuple(raw.get("mandatory_on_post") or ()),
        mandatory_filter_fields=tuple(raw.get("mandatory_filter_fields") or ()),
    )


@cache
def raw_metadata() -> dict:
    text = resources.files("exactonline_api").joinpath("data/endpoints.json").read_text()
    return json.loads(text)


@cache
def endpoints() -> dict[str, Endpoint]:
    return {raw["path"]: _endpoint(raw) for raw in raw_metadata()["endpoints"]}


@cache
def deleted_entity_types() -> dict[int, str]:
    """EntityType number in ``sync/Deleted`` -> the sync endpoint it covers."""
    return {row["EntityType"]: row["sync_endpoint"] for row in raw_metadata()["deleted_entity_types"]
            if row.get("sync_endpoint")}


def _entity_key(ep: Endpoint) -> tuple[str, ...]:
    ident: str | None
    if ep.kind == SYNC:
        ident = ep.entity_id_field or "ID"
    else:
        ident = ep.primary_key[0] if len(ep.primary_key) == 1 else None
        if ident is None:
            return tuple(dict.fromkeys((*ep.primary_key, "Division")))
    return (ident,) if ident == "Division" else (ident, "Division")


def _merge_fields(*eps: Endpoint | None) -> tuple[Field, ...]:
    """Union of scalar fields, first endpoint wins on type (sync is most exact)."""
    seen: dict[str, Field] = {}
    for ep in eps:
        for f in ep.scalar_fields if ep else ():
            seen.setdefault(f.name, f)
    if "Division" not in seen:
        seen["Division"] = Field("Division", "Edm.Int32", description="Division code (added by the tap)")
    return tuple(seen.values())


def _groups() -> dict[str, dict[str, Endpoint]]:
    """Group endpoints into entities keyed by their standard path (or own path)."""
    eps = endpoints()
    groups: dict[str, dict[str, Endpoint]] = {}
    for ep in eps.values():
        if ep.kind not in (SYNC, BULK):
            continue
        anchor = ep.standard_counterpart
        if ep.path in OWN_ENTITY_SYNC or anchor not in eps or ep.deprecated:
            # No standard twin: sync/Project/ProjectWBS and bulk/Project/ProjectWBS
            # are still one entity, so group them by service and name.
            anchor = ep.path if ep.deprecated else f"{ep.service.lower()}/{ep.name}"
        groups.setdefault(anchor, {})[ep.kind] = ep
        if anchor in eps and anchor != ep.path:
            groups[anchor][STANDARD] = eps[anchor]
    for ep in eps.values():
        if (ep.kind == STANDARD and "GET" in ep.methods and not ep.beta
                and ep.path not in NOT_LISTABLE and ep.path not in groups):
            groups[ep.path] = {STANDARD: ep}
    return groups


def _parent_links(groups: dict[str, dict[str, Endpoint]]) -> dict[str, ParentLink]:
    """Line endpoints reachable by ``$expand`` on a parent in the same service."""
    eps = endpoints()
    links: dict[str, ParentLink] = {}
    for parent in eps.values():
        if parent.kind != STANDARD or "GET" not in parent.methods or parent.beta or not parent.has("Modified"):
            continue
        for f in parent.fields:
            if not f.edm.startswith("Collection("):
                continue
            child = f"{parent.service}/{f.name}"
            group = groups.get(child)
            # Only true line collections (PurchaseEntries -> PurchaseEntryLines):
            # BatchNumbers also expands Warehouses, which is a master entity.
            if (group and set(group) == {STANDARD} and child not in links
                    and f.name.startswith(_singular_stem(parent.name))):
                links[child] = ParentLink(parent, f.name)
    return links


def _singular_stem(plural: str) -> str:
    for suffix in ("ies", "es", "s"):
        if plural.endswith(suffix):
            return plural[: -len(suffix)]
    return plural


def _stream_name(anchor: str, group: dict[str, Endpoint]) -> str:
    if anchor in NAME_OVERRIDES:
        return NAME_OVERRIDES[anchor]
    ep = group.get(STANDARD) or group.get(SYNC) or group[BULK]
    name = snake_case(ep.name)
    if ep.deprecated and ep.kind == SYNC:
        name += DEPRECATED_SYNC_SUFFIX
    return name


@cache
def entities() -> dict[str, Entity]:
    """All streams by stream name, in a stable order."""
    groups = _groups()
    parents = _parent_links(groups)
    deleted_by_path = {path: num for num, path in deleted_entity_types().items()}

    named: dict[str, list[tuple[str, dict[str, Endpoint]]]] = {}
    for anchor, group in groups.items():
        named.setdefault(_stream_name(anchor, group), []).append((anchor, group))

    result: dict[str, Entity] = {}
    for name, members in sorted(named.items()):
        for stream, (anchor, group) in zip(_distinct_names(name, members), members):
            result[stream] = _entity(stream, anchor, group, parents.get(anchor), deleted_by_path)
    return dict(sorted(result.items()))


def _distinct_names(name: str, members: list[tuple[str, dict[str, Endpoint]]]) -> list[str]:
    """Tell apart entities that share a name: by service, else by their whole path."""
    if len(members) == 1:
        return [name]
    eps = [group.get(STANDARD) or group.get(SYNC) or group[BULK] for _, group in members]
    by_service = [name if anchor in NAME_OVERRIDES else f"{snake_case(ep.service)}_{name}"
                  for (anchor, _), ep in zip(members, eps)]
    if len(set(by_service)) == len(members):
        return by_service
    return [snake_case(ep.path.replace("/", "_")) for ep in eps]


def _entity(stream: str, anchor: str, group: dict[str, Endpoint], parent: ParentLink | None,
            deleted_by_path: dict[str, int]) -> Entity:
    sync, bulk, standard = group.get(SYNC), group.get(BULK), group.get(STANDARD)
    source: Endpoint | None
    if sync:
        api, source = SYNC, sync
    elif bulk:
        api, source = BULK, bulk
    elif parent:
        api, source = PARENT, standard
    else:
        api, source = STANDARD, standard
    assert source is not None
    fields = _merge_fields(source, standard if api != SYNC else None)
    names = {f.name for f in fields}
    if api == SYNC:
        replication_key = "Timestamp"
    elif api == PARENT:
        replication_key = None  # the bookmark is the parent's Modified, kept in state
    else:
        replication_key = "Modified" if "Modified" in names else None
    alternatives = tuple(k for k, ep in ((SYNC, sync), (BULK, bulk), (STANDARD, standard)) if ep)
    return Entity(
        stream_name=stream,
        api=api,
        source=source,
        fields=fields,
        key=_entity_key(source),  # through the parent, source is the line's own standard endpoint
        replication_key=replication_key,
        standard=standard,
        sync=sync,
        bulk=bulk,
        parent=parent,
        deleted_entity_type=deleted_by_path.get(sync.path) if sync else None,
        selected_by_default=stream in DEFAULT_SELECTED,
        alternatives=alternatives,
        calendar_dates=calendar_fields(stream, ((f.name, f.edm) for f in fields)),
    )


def entity_for_path(path: str) -> Entity | None:
    """The stream that serves an endpoint path (any of its sync/bulk/standard URLs)."""
    for ent in entities().values():
        if path in {ep.path for ep in (ent.sync, ent.bulk, ent.standard) if ep}:
            return ent
    return None
