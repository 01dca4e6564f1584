"""A local stand-in for the Exact Online REST API, as strict as Exact (see README.md)."""

from .handle import SandboxHandle
from .server import Sandbox

__all__ = ["Sandbox", "SandboxHandle", "start_sandbox"]


def start_sandbox(**options) -> SandboxHandle:
    """Start a sandbox on an ephemeral loopback port; ``handle.stop()`` ends it."""
    return SandboxHandle(Sandbox(**options).start())
