"""Where the OAuth tokens live between runs, shared by every process that uses one Exact app.

Exact rotates the refresh token on every refresh and kills the old one, so the store is the single
source of truth: whoever refreshes writes the new pair here before using it, under a cross-process
lock (see :class:`exactonline_api.oauth.TokenManager` for the protocol).

Backends, chosen by ``token_store`` in the config (:func:`open_token_store`):

* a file (default ``.tokens/exactonline-<client id prefix>.token.json`` under the working
  directory): JSON, mode 0600, replaced atomically, locked with ``fcntl.flock`` on a sibling
  ``.lock`` file (:mod:`exactonline_api.token_file`);
* PostgreSQL (``postgresql://...``): table ``exactonline_tokens`` keyed by client id, locked with
  ``SELECT ... FOR UPDATE``; for several machines or containers sharing one app
  (:mod:`exactonline_api.token_pg`).

Besides the tokens, a store keeps a *refresh mark*: "process X started a refresh at T". It is made
durable before the refresh request goes out, so if X dies after Exact answered but before the new
pair was saved, the next process can say exactly what happened instead of a vague auth failure.
A mark is stale (ignored) once the stored tokens were issued after it.

Every way the store can fail (damaged file, no permission, read-only or full file system, a lock
that cannot be taken, an unreachable database) ends in one :class:`TokenStoreError` line that names
the place and what to do. This module is the import path for all of it.
"""

from __future__ import annotations

import os
from pathlib import Path

from exactonline_api.errors import ConfigError
from exactonline_api.token_file import FileTokenStore
from exactonline_api.token_pg import PostgresTokenStore
from exactonline_api.tokenset import (
    CRASH_ENV,
    DEFAULT_STORE_DIR,
    RECOVERY_SUFFIX,
    TokenSet,
    TokenStore,
    TokenStoreError,
    crash_point,
    default_store_path,
    process_label,
)

__all__ = [
    "CRASH_ENV",
    "DEFAULT_STORE_DIR",
    "RECOVERY_SUFFIX",
    "FileTokenStore",
    "PostgresTokenStore",
    "TokenSet",
    "TokenStore",
    "TokenStoreError",
    "crash_point",
    "default_store_path",
    "open_token_store",
    "process_label",
]


def open_token_store(spec: str | None, *, client_id: str) -> TokenStore:
    """Open the store named by the ``token_store`` config value.

    None or "": the default file under the working directory (see module doc). A ``postgresql://``
    or ``postgres://`` URL: the PostgreSQL backend. Anything else: a file path (``~`` and ``$VARS``
    expanded); an existing directory gets the default file name inside it.
    """
    if not client_id:
        raise ConfigError("client_id is missing from the config: copy it from your app at apps.exactonline.com")
    if not spec:
        return FileTokenStore(default_store_path(client_id), client_id=client_id)
    spec = spec.strip()
    if spec.startswith(("postgresql://", "postgres://")):
        return PostgresTokenStore(spec, client_id=client_id)
    if "://" in spec:
        raise ConfigError(
            f"token_store '{spec.split('://')[0]}://...' is not supported: use a file path or a postgresql:// URL"
        )
    path = Path(os.path.expandvars(os.path.expanduser(spec)))
    if path.is_dir():
        path = path / default_store_path(client_id).name
    return FileTokenStore(path, client_id=client_id)
