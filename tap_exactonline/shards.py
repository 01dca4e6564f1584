"""``division_shard: "k/n"``: this worker's share of the divisions.

A division belongs to shard ``hash(code) mod n``. The hash depends on the
division's code alone, so adding or removing a division never moves another one
to a different shard (each shard keeps its divisions and their bookmarks), and
every worker computes the same split without talking to the others. The split
applies to the configured ``divisions`` or, when those are omitted, to the
granted ones.

Shards load the same tables, so a shard never sends ``ACTIVATE_VERSION``: it
applies to the whole table and would remove every other shard's rows.
"""

from __future__ import annotations

import hashlib
import logging
import re
import typing as t

from singer_sdk import typing as th

from exactonline_api.errors import ConfigError

LOG = logging.getLogger("tap_exactonline")

_SPEC = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")

PROPERTY = th.Property(
    "division_shard", th.StringType,
    description="This worker's share of the divisions, 'k/n' (k from 1 to n), e.g. '3/8'. A division's shard "
                "follows from its code alone, so adding a division moves no other. Implies "
                "resync_activate_version false (shards share tables)")


def parse(spec: str | None) -> tuple[int, int] | None:
    """``"k/n"`` as ``(k, n)``; ``None`` when unset. One clear line when malformed."""
    if spec is None or str(spec).strip() == "":
        return None
    match = _SPEC.fullmatch(str(spec))
    if not match:
        raise ConfigError(f"division_shard {spec!r} is not 'k/n' (e.g. '3/8': the third of eight shards)")
    k, n = int(match[1]), int(match[2])
    if not 1 <= k <= n:
        raise ConfigError(f"division_shard {spec!r}: k must be between 1 and n (here 1 to {n})")
    return k, n


def shard_of(division: int, n: int) -> int:
    """The shard (1..n) a division belongs to.

    SHA-256 rather than Python's ``hash()``: that one is salted per process for
    strings, and the split must be the same on every machine and every run.
    """
    digest = hashlib.sha256(str(int(division)).encode()).digest()
    return int.from_bytes(digest[:8], "big") % n + 1


def pick(divisions: t.Iterable[int], spec: str | None) -> list[int]:
    """This shard's divisions, in the given order; all of them without a shard."""
    divisions = list(divisions)
    parsed = parse(spec)
    if parsed is None:
        return divisions
    k, n = parsed
    mine = [d for d in divisions if shard_of(d, n) == k]
    LOG.info("division_shard %s/%s: divisions %s of %d (resync_activate_version is off: shards share tables, "
             "and ACTIVATE_VERSION would remove the other shards' rows)", k, n, mine or "none", len(divisions))
    return mine


def activate_version_allowed(config: t.Mapping[str, t.Any]) -> bool:
    """``resync_activate_version`` as it applies: never on a shard."""
    return bool(config.get("resync_activate_version", True)) and parse(config.get("division_shard")) is None
