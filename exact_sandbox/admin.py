"""``/_sandbox/...``: the control panel tests and benchmarks use (never rate limited or logged).

Records are read and written in wire form (dates ``/Date(ms)/``; ISO strings
are accepted on input) and keyed by the entity's identity field.
"""

from __future__ import annotations

import json
from urllib.parse import unquote
from typing import TYPE_CHECKING, Any, Callable

from . import rules
from .faults import Rule
from .knobs import SPECS
from .payload import PayloadError, convert_value
from .store import StoreError
from .timeutil import ms_date
from .wire import Response, exact_error, json_response

if TYPE_CHECKING:
    from .server import Request, Sandbox


def handle(sb: "Sandbox", request: "Request") -> Response:
    parts = [unquote(p) for p in request.raw_path.split("/") if p][1:]
    try:
        body = json.loads(request.body or b"null")
    except json.JSONDecodeError:
        return _error(400, "admin bodies are JSON")
    try:
        for (method, pattern), fn in ROUTES.items():
            params = _match(pattern, parts)
            if params is not None and method == request.method:
                return fn(sb, request, body or {}, *params)
        return _error(404, f"no admin route {request.method} {request.raw_path}")
    except (KeyError, ValueError, TypeError, PayloadError, StoreError) as exc:
        status = getattr(exc, "status", 400)
        return _error(status, f"{type(exc).__name__}: {exc}")


def _match(pattern: tuple[str, ...], parts: list[str]) -> list[str] | None:
    """``*`` takes one segment; a final ``**`` takes a division and then a metadata path."""
    if pattern[-1] == "**":
        head = pattern[:-1]
        if len(parts) < len(head) + 2:
            return None
        params = _match(head, parts[: len(head)])
        return None if params is None else params + [parts[len(head)], "/".join(parts[len(head) + 1:])]
    if len(pattern) != len(parts):
        return None
    params = []
    for want, got in zip(pattern, parts):
        if want == "*":
            params.append(got)
        elif want != got:
            return None
    return params


def _error(status: int, message: str) -> Response:
    return json_response(status, {"error": message})


def _ok(value: Any = None, status: int = 200) -> Response:
    return json_response(status, {"ok": True} if value is None else value)


# -- knobs, clock, limits, faults, log ---------------------------------------------


def _health(sb, request, body):
    return _ok({"ok": True, "url": sb.url, "divisions": sb.knobs.division_codes})


def _get_knobs(sb, request, body):
    return _ok({"knobs": sb.knobs.as_dict(), "docs": {k: s.doc for k, s in SPECS.items()}})


def _set_knobs(sb, request, body):
    sb.apply_knobs(body)
    return _ok({"knobs": sb.knobs.as_dict()})


def _clock(sb, request, body):
    if request.method == "POST":
        if "freeze" in body:  # {"freeze": true} now, {"freeze": <epoch s>} at that time, false: run on
            freeze = body["freeze"]
            if freeze is False:
                sb.clock.thaw()
            else:
                sb.clock.freeze(None if freeze is True else float(freeze))
        sb.clock.advance(float(body.get("advance", 0)))
    return _ok({"now": sb.clock.now(), "offset": sb.clock.offset, "frozen": sb.clock.frozen})


def _limits(sb, request, body):
    if request.method == "POST":
        sb.limits.reset()
    return _ok(sb.limits.report())


def _faults(sb, request, body):
    if request.method == "POST":
        rules_ = body.get("rules", body if isinstance(body, list) else None)
        if rules_ is None:
            sb.faults.add(body)
        else:
            sb.faults.replace(rules_, body.get("seed") if isinstance(body, dict) else None)
    elif request.method == "DELETE":
        sb.faults.replace([])
    return _ok({"rules": sb.faults.report(), "kinds": sorted(k for k in Rule.__dataclass_fields__)})


def _log(sb, request, body):
    if request.method == "DELETE":
        sb.log.clear()
        return _ok()
    filters = {}
    for key, value in request.pairs:
        filters[key] = int(value) if key in ("division", "status") and value.isdigit() else value
    return _ok({"entries": sb.log.entries(**filters)})


def _counters(sb, request, body):
    return _ok({"counters": sb.log.counters()})


def _reset(sb, request, body):
    if "seed" in body:
        sb.apply_knobs({"seed": body["seed"]})
    sb.store.reset(body.get("volumes"))
    return _ok()


# -- oauth ---------------------------------------------------------------------------


def _mint(sb, request, body):
    return _ok(sb.oauth.mint_refresh_token(body.get("divisions"), body.get("issued_seconds_ago"),
                                           body.get("client_id")))


def _chains(sb, request, body):
    return _ok({"chains": sb.oauth.report()})


def _revoke(sb, request, body):
    return _ok({"revoked": sb.oauth.revoke(body.get("refresh_token"), body.get("chain"))})


def _expire_access(sb, request, body):
    return _ok({"expired": sb.oauth.expire_access_tokens()})


# -- divisions -------------------------------------------------------------------------


def _division_move(sb, request, body, code):
    code = int(code)
    with sb.store.lock:
        sb.store.division(code).renumber_rowversions(int(body.get("start", 1)))
        sb.store.division_overrides.setdefault(code, {})["DivisionMoveDate"] = ms_date(sb.store.now_local_ms())
    return _ok({"division": code, "next_timestamp": sb.store.division(code).next_ts})


def _division_patch(sb, request, body, code):
    group = sb.registry.groups["system/Divisions"]
    values = {name: convert_value(name, group.types[name], value, accept_msdate=True)
              for name, value in body.items()}
    sb.store.division_overrides.setdefault(int(code), {}).update(values)
    return _ok({"division": int(code), "overrides": sb.store.division_overrides[int(code)]})


# -- records ---------------------------------------------------------------------------


def _group(sb, path):
    group = sb.registry.group_for(path)
    if group is None:
        raise KeyError(f"unknown path {path}")
    return group


def _values(sb, group, record: dict[str, Any]) -> dict[str, Any]:
    values = {}
    for name, value in record.items():
        if name == "__metadata":
            continue
        if name not in group.index:
            raise PayloadError(f"{group.key} has no field {name!r}")
        if name == "Timestamp":
            continue  # the rowversion is the store's to give
        values[name] = convert_value(name, group.types[name], value, accept_msdate=True)
    rules.normalize(group.key, values, sb.knobs)
    return values


def _raw(sb, path, row) -> dict[str, Any]:
    endpoint = sb.registry.endpoint(path)
    group = endpoint.group
    names = [f.name for f in endpoint.data_fields] + [n for n in group.identity if n not in endpoint.field_map]
    out = {name: row[group.index[name]] for name in names if name in group.index}
    out["Timestamp"] = row[group.ts_index]
    return out


def _key(group, raw: Any) -> Any:
    if isinstance(raw, list):
        return tuple(raw)
    edm = group.identity_types[0]
    if edm in ("Edm.Int32", "Edm.Int64", "Edm.Int16", "Edm.Byte"):
        return int(raw)
    if edm == "Edm.Guid":
        return str(raw).lower()
    return raw


def _records_get(sb, request, body, division, path):
    group = _group(sb, path)
    with sb.store.lock:
        table = sb.store.table(int(division), group.key)
        return _ok({"records": [_raw(sb, path, r) for r in table.by_rowversion()]})


def _records_post(sb, request, body, division, path):
    group = _group(sb, path)
    out = []
    with sb.store.lock:
        for record in body.get("records", []):
            row = sb.store.insert(int(division), group, _values(sb, group, record))
            out.append(_raw(sb, path, row))
    return _ok({"records": out}, 201)


def _records_patch(sb, request, body, division, path):
    group = _group(sb, path)
    with sb.store.lock:
        row = sb.store.update(int(division), group, _key(group, body["key"]), _values(sb, group, body["changes"]))
        return _ok({"record": _raw(sb, path, row)})


def _records_delete(sb, request, body, division, path):
    group = _group(sb, path)
    key = request.param("key", body.get("key") if isinstance(body, dict) else None)
    with sb.store.lock:
        written = sb.store.delete(int(division), group, _key(group, key))
        return _ok({"deleted": [_raw(sb, "sync/Deleted", r) for r in written]})


def _attachment(sb, request, body, division, key):
    with sb.store.lock:
        data = rules.attachment_bytes(sb.store.division(int(division)), key.lower())
    if data is None:
        return _error(404, "no such attachment")
    return Response(200, data, "application/octet-stream")


def download(sb: "Sandbox", request: "Request") -> Response:
    """``/docs/SysAttachment.aspx?ID=..&_Division_=..&Download=1`` with the bearer token."""
    chain = sb.oauth.chain_for(request.headers)
    if chain is None:
        from .wire import object_moved

        return object_moved(request.raw_path)
    request.log["client"] = chain.client_id
    key = (request.param("ID") or "").lower()
    division = int(request.param("_Division_") or chain.divisions[0])
    if division not in chain.divisions:
        return exact_error(403, "Forbidden")
    with sb.store.lock:
        data = rules.attachment_bytes(sb.store.division(division), key)
    if data is None:
        return exact_error(404, "Attachment not found.")
    if request.param("Download") != "1":
        return Response(200, b"<html><body>Attachment viewer (add &Download=1)</body></html>",
                        "text/html; charset=utf-8")
    return Response(200, data, "application/octet-stream")


Handler = Callable[..., Response]
ROUTES: dict[tuple[str, tuple[str, ...]], Handler] = {
    ("GET", ("health",)): _health,
    ("GET", ("knobs",)): _get_knobs,
    ("POST", ("knobs",)): _set_knobs,
    ("GET", ("clock",)): _clock,
    ("POST", ("clock",)): _clock,
    ("GET", ("limits",)): _limits,
    ("POST", ("limits", "reset")): _limits,
    ("GET", ("faults",)): _faults,
    ("POST", ("faults",)): _faults,
    ("DELETE", ("faults",)): _faults,
    ("GET", ("log",)): _log,
    ("DELETE", ("log",)): _log,
    ("GET", ("counters",)): _counters,
    ("POST", ("reset",)): _reset,
    ("POST", ("oauth", "refresh-token")): _mint,
    ("GET", ("oauth", "chains")): _chains,
    ("POST", ("oauth", "revoke")): _revoke,
    ("POST", ("oauth", "expire-access")): _expire_access,
    ("POST", ("divisions", "*", "move")): _division_move,
    ("PATCH", ("divisions", "*")): _division_patch,
    ("GET", ("records", "**")): _records_get,
    ("POST", ("records", "**")): _records_post,
    ("PATCH", ("records", "**")): _records_patch,
    ("DELETE", ("records", "**")): _records_delete,
    ("GET", ("attachments", "*", "*")): _attachment,
}
