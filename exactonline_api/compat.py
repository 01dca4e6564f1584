"""``override``, one import for the tap and the target: ``typing`` has it from Python 3.12; before
that it comes from typing-extensions, which singer-sdk installs on those versions (and only there)."""

from __future__ import annotations

import sys

if sys.version_info >= (3, 12):
    from typing import override
else:
    from typing_extensions import override

__all__ = ["override"]
