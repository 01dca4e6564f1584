"""How to log in, said the way the user runs us: bare, or inside Meltano.

Meltano runs plugins with ``MELTANO_PROJECT_ROOT`` and ``MELTANO_ENVIRONMENT`` set, and names the
extractor in ``MELTANO_EXTRACTOR_NAME``; there the login is ``meltano invoke tap-exactonline:auth``
(the command is defined in meltano.yml and reads the same settings), not a config file path the
user never wrote. The target's messages name the tap's command too: the tap owns the login.
"""

from __future__ import annotations

import os


def auth_command() -> str:
    if not os.environ.get("MELTANO_PROJECT_ROOT"):
        return "tap-exactonline auth --config <your config.json>"
    environment = os.environ.get("MELTANO_ENVIRONMENT")
    extractor = os.environ.get("MELTANO_EXTRACTOR_NAME") or "tap-exactonline"
    return f"meltano{f' --environment={environment}' if environment else ''} invoke {extractor}:auth"


def login_hint(*, first: bool = False) -> str:
    """The sentence that ends every "a person has to log in" message."""
    return f"Run `{auth_command()}` to log in to Exact Online{'' if first else ' again'}."
