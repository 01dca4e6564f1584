"""Build the shared client from a tap or target config (one place for both)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from exactonline_api.errors import ConfigError
from exactonline_api.oauth import OAuthClient, TokenManager
from exactonline_api.redact import register_secret
from exactonline_api.registry import raw_metadata
from exactonline_api.tokens import open_token_store

# Plain http would send the client secret in the clear; only a local sandbox may use it.
LOCAL_HTTP = ("http://127.", "http://localhost")


def base_url_of(config: Mapping[str, Any]) -> str:
    """The Exact site for a config: ``base_url`` if set, else the ``country`` site (default nl).

    The one place that derives (and checks) the site; tap, target and ``auth`` all call it."""
    base = str(config.get("base_url") or "").rstrip("/")
    if not base:
        country = str(config.get("country") or "nl")
        sites = raw_metadata()["base_urls"]
        if country not in sites:
            raise ConfigError(f"country {country!r} is not one of {', '.join(sorted(sites))}")
        return str(sites[country]).rstrip("/")
    if not base.startswith(("https://", *LOCAL_HTTP)):
        raise ConfigError(f"base_url {base!r} must be https:// (plain http only on this machine)")
    return base


def token_manager_from_config(config: Mapping, base_url: str) -> TokenManager:
    for name in ("client_secret", "refresh_token"):
        register_secret(config.get(name))
    store = open_token_store(config.get("token_store"), client_id=config["client_id"])
    oauth = OAuthClient(base_url, config["client_id"], config["client_secret"])
    return TokenManager(store, oauth, seed_refresh_token=config.get("refresh_token"))
