"""Every tunable behaviour of the sandbox, with Exact's values as defaults.

Where Exact's behaviour is uncertain (marked UNSURE in the API reference) the
default is the strict reading and the knob is the way out. Knobs can be set on
the command line (``--knob name=value``), by the pytest factory, or at run time
through ``POST /_sandbox/knobs``.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any

MB = 1024 * 1024


@dataclass(frozen=True)
class KnobSpec:
    default: Any
    doc: str


SPECS: dict[str, KnobSpec] = {
    # data
    "seed": KnobSpec(42, "seed for all generated data"),
    "divisions": KnobSpec("101,102,103", "division codes (the first is the user's current division)"),
    "generic_rows": KnobSpec(3, "rows per division for entities without a generator of their own"),
    "int64_as_string": KnobSpec(True, "write Edm.Int64 values (Timestamp) as JSON strings, as WCF does"),
    "rowversion_base": KnobSpec(1_000_000, "first rowversion (Timestamp) of generated data"),
    "history_start": KnobSpec("2023-01-01", "Modified of the oldest generated row (Exact local date)"),
    "history_days": KnobSpec(700, "generated Modified values spread over this many days"),
    "base_url": KnobSpec("", "URL written into __next and __metadata (default: the listening address)"),
    "deleted_retention_days": KnobSpec(61, "sync/Deleted keeps rows this long (Exact: 2 months)"),
    "pad_account_codes": KnobSpec(True, "store crm/Accounts.Code left-padded to 18 characters, as Exact"),
    # value shapes of real answers (REFERENCE.md 14.4), applied at the wire (wire.py)
    "whole_doubles_as_integers": KnobSpec(True, "write whole Edm.Double/Decimal values as JSON integers (9075)"),
    "pad_fixed_width": KnobSpec(True, "blank-pad fixed-width text: Country/State 3, Language 10, SearchCode 9, "
                                      "*VATCode 3 ('NL ')"),
    "escape_slashes": KnobSpec(True, "write '/' escaped in JSON answers, as WCF does"),
    "bare_array_functions": KnobSpec(True, "read/... function endpoints answer a bare array in d (one page only)"),
    "calendar_date_time": KnobSpec("", "local time of day (HH:MM) given to calendar dates, which Exact sends at "
                                       "local midnight; empty: midnight, as Exact"),
    # oauth
    "client_id": KnobSpec("sandbox-client-id", "the registered app's client id"),
    "client_secret": KnobSpec("sandbox-secret", "the registered app's client secret"),
    "redirect_uris": KnobSpec("http://127.0.0.1:*,https://example.com/callback",
                              "registered redirect URIs (shell-style patterns, comma separated)"),
    "code_lifetime": KnobSpec(180, "authorization code lifetime, seconds"),
    "access_token_lifetime": KnobSpec(600, "access token lifetime, seconds"),
    "refresh_token_lifetime": KnobSpec(30 * 86400, "refresh token lifetime, seconds"),
    "refresh_too_early_seconds": KnobSpec(570, "a refresh sooner than this after the last issue is refused"),
    "token_calls_per_day": KnobSpec(200, "token endpoint calls per client per UTC day (0: unlimited)"),
    "revoke_old_access_on_refresh": KnobSpec(False, "a refresh also invalidates the previous access token"),
    "allow_basic_client_auth": KnobSpec(False, "accept client credentials in an HTTP Basic header"),
    "division_forbidden_status": KnobSpec(403, "status for a division the token was not granted"),
    "division_forbidden_reason": KnobSpec("NoDivisionAccess", "Reason header on that answer (empty: none)"),
    # rate limits
    "minutely_limit": KnobSpec(60, "calls per (client, division) per minutely window"),
    "minutely_window_seconds": KnobSpec(60, "length of the minutely window (aligned to the epoch)"),
    "daily_limit": KnobSpec(5000, "calls per (client, division) per daily window"),
    "daily_window_seconds": KnobSpec(86400, "length of the daily window (aligned to UTC midnight)"),
    "error_limit": KnobSpec(10, "more 400/401/403/404 than this per endpoint and window blocks the endpoint"),
    "error_window_seconds": KnobSpec(3600, "window of the error limit"),
    "error_block_seconds": KnobSpec(3600, "how long an endpoint stays blocked"),
    "error_block_status": KnobSpec(403, "status while an endpoint is blocked (UNSURE at Exact)"),
    # odata
    "string_compare_ci": KnobSpec(True, "string comparisons in $filter ignore case (SQL Server collation)"),
    "sync_requires_select": KnobSpec(True, "sync endpoints demand $select like bulk ones (UNSURE)"),
    "sync_filter_timestamp_only": KnobSpec(True, "sync $filter may use only Timestamp (and EntityType on sync/Deleted)"),
    "extra_requires_select": KnobSpec(
        "cashflow/DirectDebitMandates,logistics/SalesItemPrices,generaljournalentry/GeneralJournalEntries",
        "standard endpoints that also demand $select or $top=1"),
    "require_json_accept": KnobSpec(True, "refuse (406) requests without Accept: application/json (Exact answers Atom XML)"),
    "allow_skip": KnobSpec(False, "accept $skip (Exact: unsupported on newer endpoints)"),
    "max_url_length": KnobSpec(6000, "longest accepted URL (path and query)"),
    "url_too_long_status": KnobSpec(400, "status for a URL over max_url_length"),
    # writes
    "method_not_allowed_status": KnobSpec(405, "status for a method the metadata does not allow (e.g. PUT on attachments)"),
    "allow_unknown_delete": KnobSpec(False, "allow DELETE where the metadata does not know (null)"),
    "max_binary_bytes": KnobSpec(10 * MB, "largest decoded Edm.Binary value on POST"),
    "binary_too_large_status": KnobSpec(400, "status for a binary over max_binary_bytes"),
    "max_message_bytes": KnobSpec(38 * MB, "largest request body"),
    "accept_msdate_input": KnobSpec(False, "accept /Date(ms)/ in request bodies (UNSURE; ISO always works)"),
    "reject_readonly_fields": KnobSpec(False, "400 for read-only properties in a body instead of ignoring them"),
    "cascade_deletes": KnobSpec(True, "deleting a parent deletes its lines/attachments (and logs them)"),
    "business_refusal_status": KnobSpec(500, "status of a write refused on a business rule (duplicate code, "
                                             "missing mandatory field, deleting a record in use); Exact: 500 "
                                             "with its JSON error message"),
    "unique_codes": KnobSpec("crm/Accounts,logistics/Items", "entities whose Code must be unique per division"),
    # rights
    "no_rights": KnobSpec("", "endpoints (or entities, e.g. crm/Accounts) the user has no rights for: GET "
                              "answers an empty list, writes 403, users/UserHasRights false"),
    # faults
    "latency_ms": KnobSpec(0, "added to every API and OAuth request"),
    "faults": KnobSpec([], "fault rules (JSON list); see faults.py"),
    "fault_seed": KnobSpec(0, "seed for probabilistic faults"),
    # observability
    "log_max": KnobSpec(200_000, "request log entries kept (oldest dropped first)"),
}

VOLUME_ALIASES = {
    "accounts": "crm/Accounts",
    "contacts": "crm/Contacts",
    "addresses": "crm/Addresses",
    "gl_accounts": "financial/GLAccounts",
    "gl_classifications": "financial/GLClassifications",
    "items": "logistics/Items",
    "transaction_lines": "financialtransaction/TransactionLines",
    "documents": "documents/Documents",
    "attachments": "documents/DocumentAttachments",
    "document_attachments": "documents/DocumentAttachments",
    "sales_invoices": "salesinvoice/SalesInvoices",
    "sales_invoice_lines": "salesinvoice/SalesInvoiceLines",
    "sales_orders": "salesorder/SalesOrders",
    "sales_order_lines": "salesorder/SalesOrderLines",
}


def coerce(name: str, value: Any) -> Any:
    """A knob value from text (CLI) or JSON, converted to the default's type."""
    if name not in SPECS:
        raise KeyError(f"unknown knob {name!r}")
    default = SPECS[name].default
    if not isinstance(value, str) or isinstance(default, str):
        if isinstance(default, bool) and not isinstance(value, bool):
            raise ValueError(f"knob {name} wants true/false")
        if isinstance(default, float) and isinstance(value, int):
            return float(value)
        return value
    text = value.strip()
    if isinstance(default, bool):
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"knob {name} wants true/false, got {value!r}")
    if isinstance(default, int):
        return int(float(text)) if "e" in text.lower() else int(text)
    if isinstance(default, float):
        return float(text)
    return json.loads(text)


class Knobs:
    """Current knob values; reads are plain attribute lookups on the hot path."""

    def __init__(self, **overrides: Any) -> None:
        object.__setattr__(self, "_lock", threading.Lock())
        for name, spec in SPECS.items():
            object.__setattr__(self, name, json.loads(json.dumps(spec.default)))
        self.update(overrides)

    def update(self, values: dict[str, Any]) -> None:
        coerced = {name: coerce(name, value) for name, value in values.items()}
        with self._lock:
            for name, value in coerced.items():
                object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        self.update({name: value})

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in SPECS}

    @property
    def division_codes(self) -> list[int]:
        value = self.divisions
        parts = value if isinstance(value, (list, tuple)) else str(value).split(",")
        return [int(part) for part in parts if str(part).strip()]
