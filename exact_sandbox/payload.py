"""Request bodies of POST and PUT: parsed and typed as Exact (WCF) does, or refused."""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from .metadata import Endpoint
from .odata import CLR
from .timeutil import input_to_ms, ms_date

STREAM_ERROR = "Error processing request stream. The request should be a valid top-level resource object."
_GUID = re.compile(r"^\{?[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\}?$")
_INT_RANGES = {"Edm.Byte": (0, 255), "Edm.Int16": (-(2**15), 2**15 - 1), "Edm.Int32": (-(2**31), 2**31 - 1),
               "Edm.Int64": (-(2**63), 2**63 - 1)}


class PayloadError(Exception):
    """A body Exact would refuse with 400 (``status`` may say otherwise)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def parse_object(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw.decode("utf-8-sig") or "null")
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise PayloadError(STREAM_ERROR) from None
    if not isinstance(value, dict):
        raise PayloadError(STREAM_ERROR)
    return value


def convert_value(name: str, edm: str, value: Any, *, accept_msdate: bool) -> Any:
    """A JSON value -> stored form (dates as ``/Date(ms)/``, guids lowercase, binaries as bytes)."""
    if value is None:
        return None
    try:
        if edm == "Edm.Guid":
            if isinstance(value, str) and _GUID.match(value):
                return value.strip("{}").lower()
        elif edm == "Edm.String":
            if isinstance(value, str):
                return value
        elif edm in _INT_RANGES:
            if isinstance(value, str) and edm == "Edm.Int64" and re.fullmatch(r"-?\d+", value):
                value = int(value)
            if isinstance(value, int) and not isinstance(value, bool):
                low, high = _INT_RANGES[edm]
                if low <= value <= high:
                    return value
        elif edm in ("Edm.Double", "Edm.Single", "Edm.Decimal"):
            if isinstance(value, str) and edm == "Edm.Decimal":
                value = float(value)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
        elif edm == "Edm.Boolean":
            if isinstance(value, bool):
                return value
        elif edm == "Edm.DateTime":
            if isinstance(value, str):
                return ms_date(input_to_ms(value, accept_msdate=accept_msdate))
        elif edm == "Edm.Binary":
            if isinstance(value, str):
                return base64.b64decode(value, validate=True)
    except (ValueError, OverflowError, binascii.Error):
        pass
    raise PayloadError(
        "Error processing request stream. Error encountered in converting the value from request payload for "
        f"property '{name}' to type '{CLR.get(edm, edm)}', which is the property's type. See inner exception "
        "for more detail.")


def convert_body(endpoint: Endpoint, body: dict[str, Any], *, method: str, knobs: Any) -> tuple[dict, dict]:
    """Typed values for the stored row, and navigation values (deep inserts) kept apart.

    Unknown properties are refused as WCF refuses them; properties the metadata
    marks read-only for this method are ignored (or refused, by knob).
    """
    values: dict[str, Any] = {}
    navs: dict[str, Any] = {}
    flag = "post" if method == "POST" else "put"
    for name, value in body.items():
        if name == "__metadata":
            continue
        field = endpoint.field_map.get(name)
        if field is None:
            raise PayloadError(f"The property '{name}' does not exist on type '{endpoint.type_name}'. Make sure "
                               "to only use property names that are defined by the type.")
        if field.is_nav:
            navs[name] = value
            continue
        if getattr(field, flag) is False:
            if knobs.reject_readonly_fields:
                raise PayloadError(f"The property '{name}' is read-only.")
            continue
        values[name] = convert_value(name, field.type, value, accept_msdate=knobs.accept_msdate_input)
    return values, navs


def missing_mandatory(endpoint: Endpoint, values: dict[str, Any]) -> list[str]:
    return [name for name in endpoint.mandatory_on_post if values.get(name) in (None, "", b"")]
