"""The private singer-sdk members the tap relies on still look the way sdk_hooks.py was written against."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
from singer_sdk.streams import Stream

from tap_exactonline import sdk_hooks

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", sorted(sdk_hooks.PRIVATE_SDK_MEMBERS))
def test_private_sdk_member_keeps_its_signature(name):
    member = getattr(Stream, name, None)
    assert member is not None, f"singer-sdk no longer has Stream.{name}: revisit tap_exactonline/sdk_hooks.py"
    assert str(inspect.signature(member)) == sdk_hooks.PRIVATE_SDK_MEMBERS[name], (
        f"singer-sdk changed Stream.{name}: revisit tap_exactonline/sdk_hooks.py")


def test_every_overridden_private_hook_is_marked_and_listed():
    overridden = [name for name, value in vars(sdk_hooks.StreamHooks).items()
                  if name.startswith("_") and not name.startswith("__") and callable(value)
                  and hasattr(Stream, name)]
    assert overridden, "expected the hooks module to override private SDK members"
    for name in overridden:
        assert name in sdk_hooks.PRIVATE_SDK_MEMBERS, name
        assert getattr(vars(sdk_hooks.StreamHooks)[name], "__override__", False), f"{name} lacks @override"


def test_no_module_outside_sdk_hooks_touches_a_private_sdk_member():
    names = "|".join(re.escape(n) for n in [*sdk_hooks.PRIVATE_SDK_MEMBERS, "_stream_version", "_tap"])
    pattern = re.compile(rf"\.({names})\b")
    offenders = []
    for path in sorted((ROOT / "tap_exactonline").glob("*.py")):
        if path.name == "sdk_hooks.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line):
                offenders.append(f"{path.name}:{number}: {line.strip()}")
    assert not offenders, offenders
