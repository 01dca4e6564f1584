"""The private singer-sdk members the tap and the target rely on still look the way they were written
against (tap_exactonline/sdk_hooks.py, target_exactonline/sinks.py), and nothing else touches one."""

from __future__ import annotations

import inspect
import re
import typing as t
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest
from singer_sdk import Tap, Target
from singer_sdk.contrib.msgspec import MsgSpecWriter
from singer_sdk.sinks import BatchSink
from singer_sdk.streams import Stream

from tap_exactonline import sdk_hooks
from target_exactonline import sinks

@dataclass(frozen=True)
class Home:
    """The one module of a package that may touch private singer-sdk members, and what counts."""

    module: ModuleType  # lists them in PRIVATE_SDK_MEMBERS, with the signatures written against
    cls: type  # its class that overrides them
    base: type  # the singer-sdk class they belong to
    sdk_classes: tuple[type, ...]  # whose private members (over their whole MRO) count as private
    attributes: frozenset[str] = frozenset()  # private attributes the SDK sets on instances, in no class

    @property
    def path(self) -> Path:
        return Path(t.cast(str, self.module.__file__))

    @property
    def listed(self) -> dict[str, str]:
        return self.module.PRIVATE_SDK_MEMBERS

    def private_names(self) -> set[str]:
        return {name for cls in self.sdk_classes for base in cls.__mro__ if base.__module__.startswith("singer_sdk")
                for name in vars(base) if name.startswith("_") and not name.startswith("__")} | self.attributes


HOMES = [
    Home(sdk_hooks, sdk_hooks.StreamHooks, Stream, (Tap, Stream, MsgSpecWriter), frozenset({"_tap", "_stream_version"})),
    Home(sinks, sinks.ExactSink, BatchSink, (Target, BatchSink)),
]


def _id(home: Home) -> str:
    return home.path.parent.name


@pytest.mark.parametrize(("base", "name", "signature", "where"), [
    pytest.param(home.base, name, signature, home.path.name, id=f"{home.base.__name__}.{name}")
    for home in HOMES for name, signature in sorted(home.listed.items())])
def test_private_sdk_member_keeps_its_signature(base, name, signature, where):
    member = getattr(base, name, None)
    assert member is not None, f"singer-sdk no longer has {base.__name__}.{name}: revisit {where}"
    assert str(inspect.signature(member)) == signature, f"singer-sdk changed {base.__name__}.{name}: revisit {where}"


@pytest.mark.parametrize("home", HOMES, ids=_id)
def test_every_overridden_private_member_is_listed_and_marked_and_every_listed_one_used(home):
    overridden = [name for name, value in vars(home.cls).items()
                  if name.startswith("_") and not name.startswith("__") and callable(value) and hasattr(home.base, name)]
    assert overridden, f"expected {home.cls.__name__} to override private SDK members"
    for name in overridden:
        assert name in home.listed, name
        assert getattr(vars(home.cls)[name], "__override__", False), f"{name} lacks @override"
    # No stale entry: each listed member is overridden, or called in the home module.
    text = home.path.read_text()
    assert [n for n in home.listed if n not in overridden and not re.search(rf"\.{n}\b", text)] == []


@pytest.mark.parametrize("home", HOMES, ids=_id)
def test_no_module_but_its_home_touches_a_private_sdk_member(home):
    private = home.private_names()
    offenders = []
    for path in sorted(home.path.parent.glob("*.py")):
        allowed = set(home.listed) | home.attributes if path == home.path else set()
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if {m for m in re.findall(r"\b(_[a-z]\w*)\b", line) if m in private} - allowed:
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
