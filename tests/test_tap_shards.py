"""``division_shard``: a stable split of the divisions, over the granted list too."""

from __future__ import annotations

import logging

import pytest

from exactonline_api.errors import ConfigError
from tap_exactonline import shards
from tap_exactonline.tap import TapExactOnline
from tests.taprun import run_tap, sandbox_connection

CODES = list(range(100_001, 100_301))  # 300 divisions, as in the issue


@pytest.mark.parametrize("n", [1, 2, 3, 8])
def test_shards_partition_the_divisions(n):
    picked = [shards.pick(CODES, f"{k}/{n}") for k in range(1, n + 1)]
    assert sorted(d for part in picked for d in part) == CODES  # each division in exactly one shard
    # Roughly even: no shard holds more than twice its fair share of 300.
    assert max(map(len, picked)) <= 2 * len(CODES) / n


def test_adding_a_division_moves_no_other():
    before = {k: shards.pick(CODES, f"{k}/8") for k in range(1, 9)}
    grown = [*CODES, 555_555, 100_000]
    for k in range(1, 9):
        after = shards.pick(grown, f"{k}/8")
        assert set(before[k]) <= set(after)
        assert set(after) - set(before[k]) <= {555_555, 100_000}


def test_split_never_changes():
    # SHA-256 of the code, not Python's salted hash(): the same in every process, on every
    # machine and in every version. A change here would move divisions away from their state.
    assert [shards.shard_of(d, 3) for d in (101, 102, 103, 104, 105)] == [1, 1, 3, 2, 2]
    assert [shards.shard_of(d, 8) for d in (101, 102, 103, 104, 105)] == [3, 4, 2, 5, 6]
    assert shards.shard_of(101, 1) == 1


@pytest.mark.parametrize("spec, problem", [
    ("3", "is not 'k/n'"), ("a/b", "is not 'k/n'"), ("0/3", "between 1 and n"), ("4/3", "between 1 and n"),
])
def test_bad_shard_is_one_line(spec, problem):
    with pytest.raises(ConfigError) as err:
        shards.parse(spec)
    assert problem in str(err.value) and "\n" not in str(err.value)


def test_bad_shard_is_refused_before_any_call(sandbox, tmp_path):
    sandbox.reset_log()
    with pytest.raises(ConfigError, match="division_shard"):
        TapExactOnline(config={**sandbox_connection(sandbox, tmp_path), "division_shard": "2of3"})
    assert sandbox.requests() == []  # not even the token call


def test_shard_reads_only_its_granted_divisions_and_never_activates(sandbox, tmp_path, caplog):
    granted = list(sandbox.divisions)
    n = 2
    mine = [d for d in granted if shards.shard_of(d, n) == 1]
    others = set(granted) - set(mine)
    assert mine and others, "the sandbox's divisions should fall into both shards"
    config = {**sandbox_connection(sandbox, tmp_path), "division_shard": f"1/{n}"}  # no `divisions`: granted
    sandbox.reset_log()
    with caplog.at_level(logging.INFO, logger="tap_exactonline"):
        out = run_tap(config, streams={"accounts"})
    read = {r["division"] for r in sandbox.requests() if r["path"].endswith("Accounts")}
    assert read == set(mine)
    assert {r["Division"] for r in out.records["accounts"]} == set(mine)
    lines = [r.getMessage() for r in caplog.records if "division_shard" in r.getMessage()]
    assert len(lines) == 1 and "resync_activate_version is off" in lines[0]
    assert TapExactOnline(config=config, validate_config=False).resyncs.use_versions is False
    assert not [m for m in out.messages if m["type"] == "ACTIVATE_VERSION"]


def test_empty_shard_reads_nothing(sandbox, tmp_path):
    granted = list(sandbox.divisions)
    n = 16
    empty = next(k for k in range(1, n + 1) if not shards.pick(granted, f"{k}/{n}"))
    config = {**sandbox_connection(sandbox, tmp_path), "divisions": granted, "division_shard": f"{empty}/{n}"}
    sandbox.reset_log()
    out = run_tap(config, streams={"accounts"})
    assert out.records == {} and not [r for r in sandbox.requests() if r["path"].endswith("Accounts")]
