"""Build the shared client from a tap or target config (one place for both)."""

from __future__ import annotations

from collections.abc import Mapping

from exactonline_api.oauth import OAuthClient, TokenManager
from exactonline_api.redact import register_secret
from exactonline_api.tokens import open_token_store


def token_manager_from_config(config: Mapping, base_url: str) -> TokenManager:
    for name in ("client_secret", "refresh_token"):
        register_secret(config.get(name))
    store = open_token_store(config.get("token_store"), client_id=config["client_id"])
    oauth = OAuthClient(base_url, config["client_id"], config["client_secret"])
    return TokenManager(store, oauth, seed_refresh_token=config.get("refresh_token"))
