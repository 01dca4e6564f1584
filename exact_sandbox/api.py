"""``/api/v1/...``: authentication, division grants, rate limits, then the OData resource.

Any endpoint in the metadata is served by the same code; only ``current/Me``,
the division lists and ``read/sync/Sync/SyncTimestamp`` compute their rows.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from . import query, rules
from .metadata import DIVISION_LIST_PATHS, ROWVERSION, Endpoint, EntityGroup
from .odata import ODataError, parse_key, parse_literal
from .payload import STREAM_ERROR, PayloadError, convert_body, missing_mandatory, parse_object
from .store import USER_ID, USER_NAME, StoreError, Table
from .timeutil import ms_date, ms_of
from .wire import ApiError, Response, api_body, exact_error, fail, object_moved

if TYPE_CHECKING:
    from .server import Request, Sandbox

ERROR_STATUSES = frozenset({400, 401, 403, 404})


@dataclass
class Target:
    """What a URL names: the endpoint, the division, and an optional key and tail."""

    path: str  # logical (metadata) path, for logs and limits
    division: int | None
    endpoint: Endpoint | None = None
    key: str | None = None
    tail: str | None = None
    url_prefix: str = ""  # {base}/api/v1/{division}/{path}


def resolve(sandbox: "Sandbox", raw_path: str) -> Target | Response:
    rest = unquote(raw_path[len("/api/v1/"):])
    base = sandbox.base_url
    if rest.startswith("beta/"):
        parts = rest.split("/", 2)
        if len(parts) < 3 or not parts[1].isdigit():
            return exact_error(404, "Resource not found.")
        division, resource, prefix = int(parts[1]), parts[2], "beta/{division}/"
        url_root = f"{base}/api/v1/beta/{division}/"
    elif rest.startswith(("current/", "system/Users")):
        division, resource, prefix, url_root = None, rest, "", f"{base}/api/v1/"
    else:
        head, _, resource = rest.partition("/")
        if not head.isdigit() or not resource:
            return exact_error(404, "Resource not found.")
        division, prefix, url_root = int(head), "", f"{base}/api/v1/{head}/"
    key = tail = None
    if "(" in resource:
        opening, closing = resource.index("("), resource.rfind(")")
        if closing < opening:
            return exact_error(400, "Bad Request - Error in query syntax.")
        key, tail = resource[opening + 1:closing], resource[closing + 1:].lstrip("/") or None
        resource = resource[:opening]
    elif resource.endswith("/$count"):
        resource, tail = resource[: -len("/$count")], "$count"
    path = prefix + resource
    endpoint = sandbox.registry.endpoint(path)
    if endpoint is None or (division is None) == endpoint.has_division:
        return Target(path, division, None)
    return Target(path, division, endpoint, key, tail, url_root + resource)


class Api:
    def __init__(self, sandbox: "Sandbox") -> None:
        self.sb = sandbox

    def serve(self, request: "Request", target: Target) -> Response:
        sb = self.sb
        knobs = sb.knobs
        if len(request.raw_path) + 1 + len(request.query) > knobs.max_url_length:
            return exact_error(knobs.url_too_long_status,
                               f"The URL is longer than the maximum of {knobs.max_url_length} characters.")
        chain = sb.oauth.chain_for(request.headers)
        if chain is None:
            return object_moved(request.raw_path)
        client = chain.client_id
        request.log["client"] = client
        division = target.division
        limit_headers: list[tuple[str, str]] = []
        if division is not None:
            if division not in chain.divisions or division not in knobs.division_codes:
                reason = [("Reason", knobs.division_forbidden_reason)] if knobs.division_forbidden_reason else []
                response = exact_error(knobs.division_forbidden_status,
                                       f"Forbidden: no access to division {division}.", reason)
                sb.limits.record_error(client, division, target.path)
                return response
            if sb.limits.blocked(client, division, target.path):
                return exact_error(knobs.error_block_status,
                                   f"The endpoint {target.path} is blocked for one hour because it received "
                                   f"more than {knobs.error_limit} errors (400, 401, 403, 404) within one hour.")
            allowed, limit_headers = sb.limits.take(client, division)
            if not allowed:
                return Response(429, b"", None, limit_headers)
            chain.current_division = division
        try:
            response = self._dispatch(request, target, chain)
        except ApiError as exc:
            response = exc.response
        except ODataError as exc:
            response = exact_error(400, str(exc))
        except PayloadError as exc:
            response = exact_error(exc.status, str(exc))
        except StoreError as exc:
            response = exact_error(exc.status, str(exc))
        response.headers.extend(limit_headers)
        if response.status in ERROR_STATUSES and division is not None:
            sb.limits.record_error(client, division, target.path)
        return response

    # -- dispatch ---------------------------------------------------------------

    def _dispatch(self, request: "Request", target: Target, chain) -> Response:
        endpoint = target.endpoint
        knobs = self.sb.knobs
        if endpoint is None:
            raise fail(404, f"Resource not found for the segment '{target.path.rsplit('/', 1)[-1]}'.")
        if knobs.require_json_accept and "json" not in request.headers.get("accept", "") \
                and "json" not in request.param("$format", ""):
            raise fail(406, "The sandbox answers only JSON: send 'Accept: application/json' "
                            "(Exact would answer Atom XML).")
        method = request.method
        allowed = endpoint.allows(method) if method in ("GET", "POST", "PUT", "DELETE") else False
        if method == "DELETE" and allowed is None:
            allowed = knobs.allow_unknown_delete
        if not allowed:
            raise fail(knobs.method_not_allowed_status,
                       f"The method {method} is not allowed on {endpoint.path}.")
        if endpoint.path == rules.RIGHTS_PATH and method == "GET":
            return self._user_has_rights(request)
        if method == "GET":
            return self._get(request, target, chain)
        if not rules.has_rights(knobs, endpoint.path, endpoint.group.key):
            raise fail(403, f"Forbidden - you have no rights for {endpoint.path}.")
        with self.sb.store.lock:
            if method == "POST":
                if target.key is not None:
                    raise fail(400, "POST is not allowed on a single entity.")
                return self._create(request, target)
            if target.key is None:
                raise fail(400, f"{method} needs a key, e.g. {endpoint.path}(guid'...').")
            if method == "PUT":
                return self._update(request, target)
            return self._delete(target)

    def _division_code(self, target: Target) -> int:
        return target.division if target.division is not None else self.sb.knobs.division_codes[0]

    def _table(self, target: Target) -> Table:
        return self.sb.store.table(self._division_code(target), target.endpoint.group.key)

    # -- reads ------------------------------------------------------------------

    def _get(self, request: "Request", target: Target, chain) -> Response:
        endpoint = target.endpoint
        store = self.sb.store
        with store.lock:
            table, row_filter = self._source(request, target, chain)
            if not rules.has_rights(self.sb.knobs, endpoint.path, endpoint.group.key):
                row_filter = lambda row: False  # noqa: E731  Exact: no rights, no error, an empty list
            division = self._division_code(target)
            child_table = lambda group: store.table(division, group.key)  # noqa: E731
            qreq = query.QueryRequest(endpoint, table, request.pairs, target.url_prefix, self.sb.knobs,
                                      child_table, row_filter)
            if target.tail == "$count":
                return Response(200, str(query.count(qreq)).encode(), "text/plain; charset=utf-8")
            if target.key is not None:
                return self._get_one(qreq, target)
            rows, next_link, total = query.run(qreq)
        knobs = self.sb.knobs
        if knobs.bare_array_functions and endpoint.path.startswith("read/") and not next_link and total is None:
            # Function-style read services answer a bare array (it cannot carry __next or __count).
            return Response(200, api_body({"d": rows}, knobs), rows=len(rows))
        body: dict[str, Any] = {"results": rows}
        if total is not None:
            body["__count"] = str(total)
        if next_link:
            body["__next"] = next_link
        return Response(200, api_body({"d": body}, knobs), rows=len(rows))

    def _get_one(self, qreq: "query.QueryRequest", target: Target) -> Response:
        endpoint = qreq.endpoint
        group = endpoint.group
        names = endpoint.primary_key or group.identity
        types = tuple(group.types.get(n, "Edm.Guid") for n in names)
        key = parse_key(target.key, names, types)
        if tuple(names) == group.identity:
            row = qreq.table.rows.get(key)
        else:
            slots = [group.index[n] for n in names]
            wanted = key if isinstance(key, tuple) else (key,)
            row = next((r for r in qreq.table.rows.values() if tuple(r[s] for s in slots) == wanted), None)
        if row is None or (qreq.row_filter is not None and not qreq.row_filter(row)):
            raise fail(404, f"Resource not found for the segment '{endpoint.name}'.")
        if target.tail and target.tail != "$count":
            return self._navigation(qreq, row, target.tail)
        query.check_options(qreq)
        renderer = query.Renderer(endpoint, query.selection_for(qreq), qreq.uri_prefix,
                                  self.sb.knobs, qreq.child_table)
        return Response(200, api_body({"d": renderer(row)}, self.sb.knobs), rows=1)

    def _navigation(self, qreq: "query.QueryRequest", row: list, nav: str) -> Response:
        group = qreq.endpoint.group
        link = group.children.get(nav)
        if link is None:
            raise fail(404, f"Resource not found for the segment '{nav}'.")
        child_group, fk = link
        child_endpoint = child_group.primary
        rows = qreq.child_table(child_group).children_by(fk).get(row[group.index[group.identity[0]]], [])
        prefix = qreq.uri_prefix.rsplit("/", len(qreq.endpoint.path.split("/")))[0] + "/" + child_endpoint.path
        selection = query.Selection([f.name for f in child_endpoint.fields], {})
        renderer = query.Renderer(child_endpoint, selection, prefix, self.sb.knobs, None)
        return Response(200, api_body({"d": {"results": [renderer(r) for r in rows]}}, self.sb.knobs),
                        rows=len(rows))

    def _source(self, request: "Request", target: Target, chain) -> tuple[Table, Any]:
        """The table behind an endpoint, computed for the few endpoints that are not stored."""
        path = target.endpoint.path
        if path == "current/Me":
            return self._me(target, chain), None
        if path in DIVISION_LIST_PATHS:
            return self._divisions(target, chain), None
        if path == "read/sync/Sync/SyncTimestamp":
            return self._sync_timestamp(request, target), None
        table = self._table(target)
        if path == "sync/Deleted":
            index = table.group.index["DeletedDate"]
            oldest = self.sb.store.now_local_ms() - int(self.sb.knobs.deleted_retention_days) * 86_400_000
            return table, lambda row: (ms_of(row[index]) or 0) >= oldest
        return table, None

    def _computed(self, endpoint: Endpoint, rows: list[dict[str, Any]]) -> Table:
        group = endpoint.group
        table = Table(group)
        lists = []
        for number, values in enumerate(rows):
            row = [None] * len(group.fields)
            for name, value in values.items():
                if name in group.index:
                    row[group.index[name]] = value
            row[group.ts_index] = number
            lists.append(row)
        table.load(lists)
        return table

    def _me(self, target: Target, chain) -> Table:
        sb = self.sb
        current = chain.current_division or chain.divisions[0]
        now = sb.clock.now()
        local_ms = sb.store.now_local_ms()
        return self._computed(target.endpoint, [{
            "UserID": USER_ID, "CurrentDivision": current, "AccountingDivision": chain.divisions[0],
            "FullName": USER_NAME, "FirstName": "Sandra", "LastName": "Sandbox", "Initials": "S.",
            "Email": "sandra@example.com", "UserName": "sandra@example.com", "Gender": "V",
            "Language": "NL", "LanguageCode": "nl-NL", "Legislation": 1, "Title": "MW",
            "DivisionCustomer": "0c3e3b0e-7a4c-4d7e-9e52-0c1f5f0e9b11", "DivisionCustomerCode": "1",
            "DivisionCustomerName": "Sandbox Holding B.V.", "IsClientUser": False, "IsStarterUser": False,
            "IsMyFirmPortalUser": False, "IsEmployeeSelfServiceUser": False, "IsMyFirmLiteUser": False,
            "IsOEIMigrationMandatory": False, "PackageCode": "SANDBOX",
            "ServerTime": ms_date(local_ms), "ServerUtcOffset": float(round((local_ms / 1000) - now)),
        }])

    def _divisions(self, target: Target, chain) -> Table:
        knobs = self.sb.knobs
        endpoint = target.endpoint
        codes = knobs.division_codes if endpoint.path == "system/AllDivisions" else \
            [c for c in knobs.division_codes if c in chain.divisions]
        current = chain.current_division or chain.divisions[0]
        rows = []
        for number, code in enumerate(codes):
            values = {
                "Code": code, "Description": f"Sandbox {code} B.V.", "Current": code == current,
                "Hid": code, "HID": code, "Status": 0 if endpoint.path == "hrm/Divisions" else 1,
                "BlockingStatus": 0, "Country": "NL", "Currency": "EUR", "Legislation": "NL",
                "IsMainDivision": number == 0, "IsDossierDivision": False, "IsHRDivision": False,
                "IsPracticeDivision": False, "Main": number == 0, "Customer": USER_ID,
                "CustomerCode": f"{code:>18}", "CustomerName": "Sandbox Holding B.V.",
                "StartDate": ms_date(1_672_531_200_000), "DivisionMoveDate": None,
                "DivisionHRLinkUnlinkDate": None, "VATNumber": f"NL{code:09d}B01",
                "Created": ms_date(1_672_531_200_000), "Modified": ms_date(1_672_531_200_000),
            }
            values.update(self.sb.store.division_overrides.get(code, {}))
            rows.append(values)
        return self._computed(endpoint, rows)

    def _sync_timestamp(self, request: "Request", target: Target) -> Table:
        modified_text, api_text = request.param("modified"), request.param("endPoint")
        if modified_text is None or api_text is None:
            raise fail(400, "The parameters 'modified' (datetime'...') and 'endPoint' ('TransactionLines') "
                            "are mandatory.")
        edm, modified = parse_literal(modified_text)
        api_edm, api_name = parse_literal(api_text)
        if edm != "Edm.DateTime" or api_edm != "Edm.String":
            raise fail(400, "Use modified=datetime'YYYY-MM-DDTHH:MM:SS' and endPoint='Name'.")
        sync_endpoint = self._sync_endpoint_named(api_name)
        if sync_endpoint is None:
            raise fail(400, f"Unknown sync endpoint '{api_name}'.")
        ts = self.sb.store.sync_timestamp(self._division_code(target), sync_endpoint.group, modified)
        return self._computed(target.endpoint, [{"Modified": ms_date(modified), "API": api_name,
                                                 "TimeStampAsBigInt": ts}])

    def _sync_endpoint_named(self, name: str) -> Endpoint | None:
        for endpoint in self.sb.registry.endpoints.values():
            if endpoint.kind == "sync" and endpoint.path.rsplit("/", 1)[-1].lower() == name.lower():
                return endpoint
        return None

    # -- writes -----------------------------------------------------------------

    def _create(self, request: "Request", target: Target) -> Response:
        sb = self.sb
        endpoint = target.endpoint
        group = endpoint.group
        division = sb.store.division(self._division_code(target))
        values, navs = convert_body(endpoint, parse_object(request.body), method="POST", knobs=sb.knobs)
        missing = missing_mandatory(endpoint, values)
        if missing:  # Exact: "Verplicht: Serie", HTTP 500
            raise PayloadError("Verplicht: " + ", ".join(missing), sb.knobs.business_refusal_status)
        if len(group.identity) == 1 and group.types[group.identity[0]] == "Edm.Guid" \
                and not values.get(group.identity[0]):
            values[group.identity[0]] = str(uuid.uuid4())
        key = values.get(group.identity[0]) if len(group.identity) == 1 else None
        blob = rules.before_write(division, group.key, key, values, creating=True, knobs=sb.knobs,
                                  base_url=sb.base_url)
        children = self._deep_insert_values(group, navs)
        row = sb.store.insert(division.code, group, values)
        key = division.table(group.key).key_of(row)
        rules.after_insert(division, group.key, key, blob)
        for child_group, fk, child_values in children:
            child_values[fk] = key
            sb.store.insert(division.code, child_group, child_values)
        full = "return=representation" in request.headers.get("prefer", "").replace(" ", "")
        selection = query.Selection([f.name for f in endpoint.fields], {})
        renderer = query.Renderer(endpoint, selection, target.url_prefix, sb.knobs, None)
        body = renderer(row)
        if not full:  # Exact: every property null except the key
            keep = {"__metadata", *group.identity}
            body = {k: (v if k in keep else None) for k, v in body.items()}
        return Response(201, api_body({"d": body}, sb.knobs), headers=[("Location", body["__metadata"]["uri"])],
                        rows=1)

    def _deep_insert_values(self, group: EntityGroup, navs: dict[str, Any]) -> list:
        children = []
        for nav, items in navs.items():
            link = group.children.get(nav)
            if link is None or not isinstance(items, list):
                raise PayloadError(f"The navigation property '{nav}' cannot be written here.")
            child_group, fk = link
            for item in items:
                if not isinstance(item, dict):
                    raise PayloadError(STREAM_ERROR)
                values, _ = convert_body(child_group.primary, item, method="POST", knobs=self.sb.knobs)
                children.append((child_group, fk, values))
        return children

    def _key(self, target: Target) -> Any:
        group = target.endpoint.group
        return parse_key(target.key, group.identity, group.identity_types)

    def _update(self, request: "Request", target: Target) -> Response:
        sb = self.sb
        endpoint = target.endpoint
        group = endpoint.group
        key = self._key(target)
        division = sb.store.division(self._division_code(target))
        if key not in division.table(group.key).rows:
            raise fail(404, f"Resource not found for the segment '{endpoint.name}'.")
        values, navs = convert_body(endpoint, parse_object(request.body), method="PUT", knobs=sb.knobs)
        if navs:
            raise PayloadError("Navigation properties cannot be changed with PUT.")
        for name in group.identity:
            values.pop(name, None)
        values.pop(ROWVERSION, None)
        rules.before_write(division, group.key, key, values, creating=False, knobs=sb.knobs,
                           base_url=sb.base_url)
        sb.store.update(division.code, group, key, values)
        return Response(204, b"", None)

    def _user_has_rights(self, request: "Request") -> Response:
        """``users/UserHasRights?endpoint='crm/Accounts'&action='GET'`` -> ``{"d": {"UserHasRights": bool}}``."""
        values = {}
        for name in ("endpoint", "action"):
            raw = request.param(name)
            if raw is None:
                raise fail(400, "The parameters 'endpoint' ('crm/Accounts') and 'action' ('GET') are mandatory.")
            values[name] = parse_literal(raw)[1]
        path = str(values["endpoint"])
        endpoint = self.sb.registry.endpoint(path)
        group = endpoint.group.key if endpoint is not None else path
        return Response(200, api_body({"d": {"UserHasRights": rules.has_rights(self.sb.knobs, path, group)}},
                                      self.sb.knobs), rows=1)

    def _delete(self, target: Target) -> Response:
        key = self._key(target)
        rules.before_delete(self.sb.store.division(self._division_code(target)), target.endpoint.group.key, key,
                            self.sb.knobs)
        self.sb.store.delete(self._division_code(target), target.endpoint.group, key)
        return Response(204, b"", None)

