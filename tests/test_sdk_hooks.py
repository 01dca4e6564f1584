"""The private singer-sdk members the tap and the target rely on still look the way they were written
against (tap_exactonline/sdk_hooks.py, target_exactonline/sinks.py), and nothing else touches one."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
from singer_sdk import Target
from singer_sdk.sinks import BatchSink
from singer_sdk.streams import Stream

from tap_exactonline import sdk_hooks
from target_exactonline import sinks

ROOT = Path(__file__).resolve().parents[1]


# Where each list of private members lives, and the singer-sdk class that defines them.
PINNED = [(Stream, sdk_hooks.PRIVATE_SDK_MEMBERS, "tap_exactonline/sdk_hooks.py"),
          (BatchSink, sinks.PRIVATE_SDK_MEMBERS, "target_exactonline/sinks.py")]


@pytest.mark.parametrize(("base", "name", "signature", "where"), [
    pytest.param(base, name, signature, where, id=f"{base.__name__}.{name}")
    for base, members, where in PINNED for name, signature in sorted(members.items())])
def test_private_sdk_member_keeps_its_signature(base, name, signature, where):
    member = getattr(base, name, None)
    assert member is not None, f"singer-sdk no longer has {base.__name__}.{name}: revisit {where}"
    assert str(inspect.signature(member)) == signature, f"singer-sdk changed {base.__name__}.{name}: revisit {where}"


def test_every_overridden_private_hook_is_marked_and_listed():
    overridden = [name for name, value in vars(sdk_hooks.StreamHooks).items()
                  if name.startswith("_") and not name.startswith("__") and callable(value)
                  and hasattr(Stream, name)]
    assert overridden, "expected the hooks module to override private SDK members"
    for name in overridden:
        assert name in sdk_hooks.PRIVATE_SDK_MEMBERS, name
        assert getattr(vars(sdk_hooks.StreamHooks)[name], "__override__", False), f"{name} lacks @override"


def test_the_target_overrides_exactly_the_listed_private_sink_members_and_touches_no_other():
    overridden = sorted(name for name, value in vars(sinks.ExactSink).items()
                        if name.startswith("_") and not name.startswith("__") and callable(value)
                        and hasattr(BatchSink, name))
    assert overridden == sorted(sinks.PRIVATE_SDK_MEMBERS)
    # A private member of any singer-sdk base class of the target or its sinks, used anywhere in the
    # target's modules.
    private = {name for cls in (Target, BatchSink) for base in cls.__mro__ if base.__module__.startswith("singer_sdk")
               for name in vars(base) if name.startswith("_") and not name.startswith("__")}
    offenders = []
    for path in sorted((ROOT / "target_exactonline").glob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            used = {m for m in re.findall(r"\b(_[a-z]\w*)\b", line) if m in private}
            if used - set(sinks.PRIVATE_SDK_MEMBERS if path.name == "sinks.py" else ()):
                offenders.append(f"{path.name}:{number}: {line.strip()}")
    assert not offenders, offenders


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


def sdk_overrides() -> list[tuple[str, object]]:
    """Every function of the tap's and target's classes that replaces a singer-sdk member."""
    import importlib
    import pkgutil

    import tap_exactonline
    import target_exactonline

    found = []
    for package in (tap_exactonline, target_exactonline):
        for module_info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
            if module_info.name.endswith("__main__"):
                continue  # running it is the CLI
            module = importlib.import_module(module_info.name)
            for cls in vars(module).values():
                if not inspect.isclass(cls) or cls.__module__ != module.__name__:
                    continue
                sdk_bases = [b for b in cls.__mro__[1:] if b.__module__.startswith("singer_sdk")]
                for name, value in vars(cls).items():
                    function = value.fget if isinstance(value, property) else value
                    if inspect.isfunction(function) and not name.startswith("__") \
                            and any(name in vars(base) for base in sdk_bases):
                        found.append((f"{cls.__module__}.{cls.__qualname__}.{name}", function))
    return found


def test_every_sdk_member_we_replace_says_override():
    # @override makes the type checker fail when an SDK upgrade renames or drops the member: without
    # it the method would quietly stop being called.
    found = sdk_overrides()
    assert len(found) >= 15, [name for name, _ in found]
    assert [name for name, function in found if not getattr(function, "__override__", False)] == []
