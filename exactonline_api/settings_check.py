"""Every setting checked before the first call, one line per mistake.

A bad setting must cost no API call, no traceback and no guessing: each problem becomes one line
that names the setting (and the value, unless it is secret) and says what to do. The tap and the
target each list their own rules (``tap_exactonline/config.py``, ``target_exactonline/config.py``);
this module holds what they share: types from the plugin's JSON schema, unknown names, the
connection settings and the file-system probes.

The SDK validates the config against the JSON schema inside ``Plugin.__init__`` and ends with a bare
"Config validation failed"; :func:`checked` wraps that call so the same mistakes come out as our
lines instead (the SDK's own messages are kept only for what our rules do not cover). That
exception is this module's one singer-sdk import.
"""

from __future__ import annotations

import difflib
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from singer_sdk.exceptions import ConfigValidationError

from exactonline_api import logs
from exactonline_api.budget import hourly_errors_setting
from exactonline_api.errors import ConfigError
from exactonline_api.settings import COUNTRIES

Config = Mapping[str, Any]
Check = Callable[[Config], list[str]]


class BadSettings(ConfigError):
    """One or more settings are wrong; ``lines`` holds one line per mistake, each naming the setting."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        super().__init__(" | ".join(lines))


@contextmanager
def checked(plugin: Any, check: Check) -> Iterator[None]:
    """Run ``plugin``'s SDK initialisation inside this; then ``check`` its config (raises BadSettings).

    Also when the SDK was told not to validate: ``--discover`` is run that way, and a catalog built
    from a wrong ``api_overrides`` would fail later with a traceback instead of one line.
    """
    try:
        yield
    except ConfigValidationError as exc:
        # plugin.config is set before the SDK validates it, so our rules can explain the same mistake.
        lines = problems(plugin, check) or [f"config: {error}" for error in exc.errors]
        raise BadSettings(lines) from None
    except ValueError:
        # `--config ENV` with a non-number in an integer setting: the SDK's int() fails first.
        lines = env_type_problems(plugin.config_jsonschema, plugin.name.upper().replace("-", "_") + "_")
        if not lines:
            raise
        raise BadSettings(lines) from None
    lines = problems(plugin, check)
    if lines:
        raise BadSettings(lines)
    logs.show_metrics_at(plugin.config.get("metrics_log_level"))


def problems(plugin: Any, check: Check) -> list[str]:
    """Names and types first; the value rules then see only the settings whose type is right."""
    config = plugin.config
    lines = schema_problems(plugin.config_jsonschema, config)
    wrong = {line.split(":", 1)[0] for line in lines}
    fine = {name: value for name, value in config.items() if name not in wrong}
    return [*lines, *connection_problems(fine), *metrics_level_problems(fine), *error_budget_problems(fine),
            *check(fine)]


def schema_problems(schema: Mapping[str, Any], config: Config) -> list[str]:
    """Unknown names and wrong types, from the plugin's JSON schema (builtin SDK settings included)."""
    properties: Mapping[str, Any] = schema.get("properties") or {}
    problems = []
    for name, value in config.items():
        if name.startswith("_"):
            continue  # orchestrators' private extras
        if name not in properties:
            near = difflib.get_close_matches(name, list(properties), n=1)
            hint = f"did you mean {near[0]}?" if near else "remove it (`--about` lists every setting)"
            problems.append(f"{name}: not a setting of this plugin; {hint}")
            continue
        problem = type_problem(name, properties[name], value)
        if problem:
            problems.append(problem)
    for name in schema.get("required") or ():
        if config.get(name) in (None, ""):
            problems.append(f"{name}: missing; copy it from your app at apps.exactonline.com")
    return problems


_KINDS = {
    "integer": ("a whole number", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    "number": ("a number", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)),
    "boolean": ("true or false", lambda v: isinstance(v, bool)),
    "string": ("text", lambda v: isinstance(v, str)),
    "array": ("a list, e.g. [1, 2]", lambda v: isinstance(v, list)),
    "object": ("an object, e.g. {\"name\": \"value\"}", lambda v: isinstance(v, dict)),
    "null": ("empty", lambda v: v is None),
}


def type_problem(name: str, spec: Mapping[str, Any], value: Any) -> str | None:
    types = spec.get("type") or []
    types = [types] if isinstance(types, str) else list(types)
    if not types or any(t not in _KINDS or _KINDS[t][1](value) for t in types):
        item = spec.get("items") or {}
        if isinstance(value, list) and item.get("type"):
            for entry in value:
                if type_problem(name, item, entry):
                    return f"{name}: {shown(name, spec, entry)} in the list is not {_wanted(item)}"
        return None
    return f"{name}: {shown(name, spec, value)} is not {_wanted(spec)}"


def _wanted(spec: Mapping[str, Any]) -> str:
    types = spec.get("type") or []
    types = [types] if isinstance(types, str) else list(types)
    return " or ".join(_KINDS[t][0] for t in types if t in _KINDS and t != "null") or "valid"


def shown(name: str, spec: Mapping[str, Any], value: Any) -> str:
    """A value for an error line; secrets never appear."""
    if spec.get("secret") or spec.get("writeOnly"):
        return "the value"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def positive(config: Config, name: str, *, minimum: int = 1, what: str = "") -> list[str]:
    value = config.get(name)
    if isinstance(value, int) and not isinstance(value, bool) and value < minimum:
        return [f"{name}: {value} is too small; use {minimum} or more{what}"]
    return []


def connection_problems(config: Config) -> list[str]:
    """client_id, client_secret, country, base_url and token_store: shared by tap, target and auth."""
    problems = []
    for name in ("client_id", "client_secret"):
        if isinstance(config.get(name), str) and not config[name].strip():
            problems.append(f"{name}: empty; copy it from your app at apps.exactonline.com")
    country = config.get("country")
    if country not in (None, "") and country not in COUNTRIES:  # "" is how Meltano passes an unset ${VAR}
        problems.append(f"country: {country!r} is not one of {', '.join(COUNTRIES)}")
    base = config.get("base_url")
    # Plain http would send the client secret in the clear; only a server on this machine may use it.
    if isinstance(base, str) and base and not base.startswith(("https://", "http://127.", "http://localhost")):
        problems.append(f"base_url: {base!r} must start with https:// (plain http only on this machine)")
    store = config.get("token_store")
    if isinstance(store, str) and store.strip():
        problems += token_store_problems(store.strip())
    return problems


def token_store_problems(spec: str) -> list[str]:
    if "://" in spec:
        parts = urlsplit(spec)
        if parts.scheme not in ("postgresql", "postgres"):
            return [f"token_store: '{parts.scheme}://...' is not supported; use a file path or a postgresql:// URL"]
        if not parts.hostname and "host=" not in parts.query:
            return ["token_store: the postgresql:// URL names no host, e.g. postgresql://user@db.example.com/exact"]
        return []
    path = Path(os.path.expandvars(os.path.expanduser(spec)))
    if path.is_dir():  # the store's default file name inside it (exactonline_api.tokens)
        existing = [p for p in path.glob("exactonline-*.token.json") if p.is_file()]
        if existing:
            return file_problems("token_store", existing[0], write=False)
        if not writable_folder(path):
            return [f"token_store: cannot write in the folder {path}; choose a folder this user can write"]
        return []
    # An existing store only has to be readable: while its access token is valid a read-only store
    # works, and a refresh it could not save is refused at that moment (exactonline_api.tokens).
    return file_problems("token_store", path, write=False)


def file_problems(name: str, path: Path, *, write: bool = True) -> list[str]:
    """A file this plugin reads and (``write``) rewrites, or creates: then its folder must be writable."""
    if path.is_dir():
        return [f"{name}: {path} is a folder; name a file in it"]
    if path.exists():
        wanted, what = (os.R_OK | os.W_OK, "read and write") if write else (os.R_OK, "read")
        if not os.access(path, wanted):
            return [f"{name}: cannot {what} {path}; fix its permissions or choose another file"]
        return []
    folder = path.parent
    while not folder.exists():
        folder = folder.parent  # the plugin creates the missing folders: the first existing one counts
    if not folder.is_dir():
        return [f"{name}: {folder} is a file, so {path} cannot be created; choose another path"]
    if not writable_folder(folder):
        return [f"{name}: cannot create {path}: the folder {folder} is not writable; choose a folder this user "
                "can write"]
    return []


def writable_folder(folder: Path) -> bool:
    """Whether a file can be created in ``folder``: tried, because permission bits lie for root and
    read-only mounts."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def folder_problems(name: str, value: str) -> list[str]:
    path = Path(os.path.expandvars(os.path.expanduser(value)))
    if not path.exists():
        return [f"{name}: the folder {path} does not exist; create it or fix the path"]
    if not path.is_dir():
        return [f"{name}: {path} is not a folder"]
    if not os.access(path, os.R_OK | os.X_OK):
        return [f"{name}: cannot read the folder {path}; fix its permissions"]
    return []


def env_type_problems(schema: Mapping[str, Any], prefix: str) -> list[str]:
    """``--config ENV``: the SDK turns ``<PREFIX>_<SETTING>`` into an int with a bare ``int()``; say which."""
    problems = []
    for name, spec in (schema.get("properties") or {}).items():
        variable = prefix + name.upper()
        raw = os.environ.get(variable)
        types = spec.get("type") or []
        if raw is not None and "integer" in types:
            try:
                int(raw)
            except ValueError:
                problems.append(f"{name}: {variable}={raw!r} is not a whole number")
    return problems


def metrics_level_problems(config: Config) -> list[str]:
    level = config.get("metrics_log_level")
    if isinstance(level, str) and level.upper() not in logs.METRIC_LEVELS:
        return [f"metrics_log_level: {level!r} is not one of {', '.join(logs.METRIC_LEVELS)}"]
    return []


def error_budget_problems(config: Config) -> list[str]:
    try:
        hourly_errors_setting(config)
    except ConfigError as exc:  # its one line, with the setting's name first like ours
        return ["hourly_error_budget: " + str(exc).removeprefix("hourly_error_budget ")]
    return []
