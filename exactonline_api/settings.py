"""The connection settings that tap and target share (the one singer-sdk import here).

Both plugins talk to the same Exact app through the same token store, so they
describe those settings once.
"""

from __future__ import annotations

from singer_sdk import typing as th

COUNTRIES = ("nl", "be", "de", "uk", "us", "es", "fr")


def connection_properties(token_store_note: str) -> list[th.Property]:
    return [
        th.Property("client_id", th.StringType, required=True,
                    description="Client ID of your app in Exact's App Center"),
        th.Property("client_secret", th.StringType, required=True, secret=True,
                    description="Client secret of your app in Exact's App Center"),
        th.Property("refresh_token", th.StringType, secret=True,
                    description="Seeds an empty token store; after that the store holds the rotating token. "
                                "Get one with `tap-exactonline auth`."),
        th.Property("token_store", th.StringType, secret=True,
                    description=f"Where tokens live: a file path or a postgresql:// URL. {token_store_note}"),
        th.Property("country", th.StringType, default="nl", allowed_values=list(COUNTRIES),
                    description="Exact Online country site: nl, be, de, uk, us, es or fr"),
        th.Property("base_url", th.StringType,
                    description="Overrides the country host, e.g. http://127.0.0.1:8000 for the sandbox"),
        th.Property("hourly_error_budget", th.IntegerType, default=5,
                    description="Errors (HTTP 400/401/403/404) per division and endpoint per hour that tap and "
                                "target together may cause, of the 10 after which Exact blocks the endpoint for "
                                "an hour; counted across runs in a file next to the token store. The rest is "
                                "headroom for other processes using the same app"),
    ]


def logging_properties() -> list[th.Property]:
    """Settings both plugins read before their first call (exactonline_api/logs.py)."""
    return [
        th.Property("metrics_log_level", th.StringType, default="DEBUG", allowed_values=["DEBUG", "INFO"],
                    description="Level of the SDK's METRIC lines (one per request and stream): DEBUG keeps "
                                "them out of an ordinary run's log, INFO shows them in every run"),
    ]
