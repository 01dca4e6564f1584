"""Deletions, Resyncs, the parallel reader and progress lines, each with fakes (no tap, no HTTP)."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from exactonline_api.errors import DailyBudgetExhausted
from exactonline_api.limits import DivisionBudget
from tap_exactonline.deletes import CHECKED, HEAD, MARK, Deletions
from tap_exactonline.parallel import END, ERROR, PAGE, START, DivisionJob, read_divisions
from tap_exactonline.progress import Progress
from tap_exactonline.report import RunReport
from tap_exactonline.resync import MOVED, VERSION, Resyncs

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=timezone.utc)
ACCOUNTS_TYPE = 2  # EntityType of Accounts in sync/Deleted (see the metadata)


class FakeStream:
    """Just what Deletions and Resyncs use of a stream: names, entity, state, selection."""

    BOOKMARK_KEYS = "replication_key_value"

    def __init__(self, name="accounts", *, routes_deletes=True, deleted_type=ACCOUNTS_TYPE, path="sync/CRM/Accounts"):
        self.name = name
        self.routes_deletes = routes_deletes
        self.selected = True
        self.entity = SimpleNamespace(deleted_entity_type=deleted_type, key=("ID", "Division"),
                                      source=SimpleNamespace(path=path))
        self.stream_state: dict = {}
        self.partitions: dict[int, dict] = {}
        self.versions: list[tuple[str, int]] = []

    def get_context_state(self, context):
        return self.partitions.setdefault(context["Division"], {})

    def begin_versioned_resync(self, version):
        self.versions.append(("begin", version))

    def activate_version(self, version):
        self.versions.append(("activate", version))


class FakeAPI:
    def __init__(self, log: dict[int, list[dict]], head: int = 500):
        self.log = log
        self.head = head
        self.calls: list[tuple] = []

    def rows(self, division, path, params):
        self.calls.append(("rows", division, path, params["$filter"]))
        since = int(params["$filter"].split("gt ")[1].rstrip("L"))
        return iter([r for r in self.log.get(division, []) if int(r["Timestamp"]) > since])

    def sync_timestamp_at(self, division, path, moment):
        self.calls.append(("timestamp", division, path))
        return self.head


def deleted(ts, key, entity_type=ACCOUNTS_TYPE):
    return {"Timestamp": ts, "EntityKey": key, "EntityType": entity_type, "DeletedDate": "/Date(1717236000000)/"}


# -- Deletions ------------------------------------------------------------------------------------

def test_a_first_read_starts_its_deletion_bookmark_at_the_log_head_taken_before_reading():
    api = FakeAPI({101: [deleted(10, "a")]}, head=500)
    stream = FakeStream()
    deletions = Deletions(lambda: api, lambda: [stream], now=lambda: NOW)
    ctx = {"Division": 101}

    head = deletions.prepare(stream, ctx)  # on the reader thread
    assert head == 500 and stream.partitions[101] == {}  # read, not written
    deletions.begin(stream, ctx, head)
    assert stream.partitions[101] == {HEAD: 500}
    assert list(deletions.tombstones(stream, 101)) == []  # nothing to route on a first read
    assert stream.partitions[101] == {MARK: 500, CHECKED: NOW.isoformat()}
    assert api.calls == [("timestamp", 101, "sync/Deleted")]


def test_tombstones_after_the_bookmark_only_of_this_entity_and_the_log_is_read_once_per_division():
    api = FakeAPI({101: [deleted(5, "old"), deleted(12, "a"), deleted(13, "x", entity_type=99), deleted(14, "b")]})
    accounts, other = FakeStream(), FakeStream("contacts", deleted_type=99)
    for stream, mark in ((accounts, 10), (other, 12)):
        stream.partitions[101] = {MARK: mark}
    deletions = Deletions(lambda: api, lambda: [accounts, other], now=lambda: NOW)
    ctx = {"Division": 101}
    for stream in (accounts, other):
        deletions.begin(stream, ctx, deletions.prepare(stream, ctx))

    got = list(deletions.tombstones(accounts, 101))
    assert [(t["ID"], t["Division"]) for t in got] == [("a", 101), ("b", 101)]
    assert all(t["_sdc_deleted_at"].startswith("2024-06-01") for t in got)
    assert accounts.partitions[101][MARK] == 14  # the log's head: the next run starts after it
    assert [t["ID"] for t in deletions.tombstones(other, 101)] == ["x"]
    assert api.calls == [("rows", 101, "sync/Deleted", "Timestamp gt 10L")]  # the lowest mark, once


def test_a_read_cut_short_keeps_its_head_and_the_next_run_routes_from_it():
    api = FakeAPI({101: [deleted(450, "gone")]})
    stream = FakeStream()
    stream.partitions[101] = {HEAD: 400}  # an earlier run noted the head, then stopped for budget
    deletions = Deletions(lambda: api, lambda: [stream], now=lambda: NOW)
    ctx = {"Division": 101}
    deletions.begin(stream, ctx, deletions.prepare(stream, ctx))
    assert stream.partitions[101] == {MARK: 400}
    assert [t["ID"] for t in deletions.tombstones(stream, 101)] == ["gone"]
    assert api.calls == [("rows", 101, "sync/Deleted", "Timestamp gt 400L")]


# -- Resyncs --------------------------------------------------------------------------------------

def resyncs_for(streams, moves, report=None, *, use_versions=True, divisions=(101, 102)):
    written = []
    resyncs = Resyncs(lambda: streams, lambda: list(divisions), lambda: moves, report or RunReport(),
                      lambda: written.append("STATE"), use_versions=use_versions, now=lambda: NOW,
                      new_version=lambda: 777)
    return resyncs, written


def test_a_moved_division_drops_the_bookmarks_of_every_division_and_activates_a_version_at_the_end():
    stream = FakeStream()
    stream.partitions = {101: {MOVED: None, "replication_key_value": 50, MARK: 9},
                         102: {MOVED: "2024-01-01T00:00:00+00:00", "replication_key_value": 70}}
    resyncs, written = resyncs_for([stream], {101: "2024-05-01T00:00:00+00:00", 102: "2024-01-01T00:00:00+00:00"})
    resyncs.plan()
    assert "replication_key_value" not in stream.partitions[101] and MARK not in stream.partitions[101]
    assert "replication_key_value" not in stream.partitions[102]  # versioned: every division again
    assert stream.partitions[101][MOVED] == "2024-05-01T00:00:00+00:00"
    assert stream.stream_state[VERSION] == 777 and stream.versions == [("begin", 777)]
    resyncs.finish()
    assert stream.versions == [("begin", 777), ("activate", 777)] and VERSION not in stream.stream_state
    assert written == ["STATE"]


def test_an_unfinished_division_holds_the_activation_back_for_the_next_run():
    stream = FakeStream()
    stream.partitions = {101: {MARK: 1, CHECKED: (NOW - timedelta(days=61)).isoformat()}, 102: {}}
    report = RunReport()
    resyncs, written = resyncs_for([stream], {}, report)
    resyncs.plan()
    report.stop_division(102, stream.name, DailyBudgetExhausted("budget"))
    resyncs.finish()
    assert stream.versions == [("begin", 777)] and stream.stream_state[VERSION] == 777 and written == []


def test_without_versions_only_the_affected_division_is_read_again_and_nothing_is_activated():
    stream = FakeStream()
    stream.partitions = {101: {MARK: 1, CHECKED: (NOW - timedelta(days=61)).isoformat(),
                               "replication_key_value": 5}, 102: {"replication_key_value": 6}}
    resyncs, written = resyncs_for([stream], {}, use_versions=False)
    resyncs.plan()
    resyncs.finish()
    assert "replication_key_value" not in stream.partitions[101]
    assert stream.partitions[102]["replication_key_value"] == 6
    assert stream.versions == [] and written == [] and resyncs.full_resyncs == ["accounts/101"]


def test_a_first_run_only_records_the_move_date():
    stream = FakeStream()
    resyncs, _ = resyncs_for([stream], {101: None, 102: "2024-01-01T00:00:00+00:00"})
    resyncs.plan()
    assert stream.partitions == {101: {MOVED: None}, 102: {MOVED: "2024-01-01T00:00:00+00:00"}}
    assert stream.versions == []


# -- the parallel reader --------------------------------------------------------------------------

def job(division, pages, *, fail_after=None, gate=None):
    def read(_prepared):
        for number, rows in enumerate(pages):
            if gate is not None:
                gate.wait(5)
            if fail_after is not None and number == fail_after:
                raise DailyBudgetExhausted(f"division {division}: budget")
            yield rows
    return DivisionJob({"Division": division}, lambda: f"prepared {division}", read)


def test_each_division_keeps_its_order_and_one_failure_leaves_the_others_running():
    jobs = [job(1, [[1], [2], [3]]), job(2, [["a"], ["b"]], fail_after=1), job(3, [["x"]])]
    events = list(read_divisions(jobs, 3))
    by_division: dict[int, list] = {}
    for kind, ctx, value in events:
        by_division.setdefault(ctx["Division"], []).append((kind, value if kind != ERROR else type(value).__name__))
    assert by_division[1] == [(START, "prepared 1"), (PAGE, [1]), (PAGE, [2]), (PAGE, [3]), (END, None)]
    assert by_division[2] == [(START, "prepared 2"), (PAGE, ["a"]), (ERROR, "DailyBudgetExhausted")]
    assert by_division[3] == [(START, "prepared 3"), (PAGE, ["x"]), (END, None)]


def test_divisions_are_read_at_the_same_time():
    both = threading.Barrier(2, timeout=5)  # each reader waits for the other: serial reading would time out

    def read(_prepared):
        both.wait()
        yield ["row"]
    jobs = [DivisionJob({"Division": d}, lambda: None, read) for d in (1, 2)]
    assert [kind for kind, _, _ in read_divisions(jobs, 2)].count(END) == 2


def test_closing_early_stops_the_readers():
    gate = threading.Event()
    events = read_divisions([job(1, [[n] for n in range(100)], gate=gate)], 1)
    assert next(events)[0] == START
    gate.set()
    events.close()  # returns once the reader thread ended (it would block on the full queue otherwise)


def test_an_error_of_the_consumer_stops_every_reader_at_once():
    from contextlib import closing

    def endless(_prepared):
        while True:
            yield ["row"]
    jobs = [DivisionJob({"Division": d}, lambda: None, endless) for d in (1, 2, 3)]
    with pytest.raises(RuntimeError), closing(read_divisions(jobs, 3)) as events:
        for kind, _, _ in events:
            if kind == PAGE:
                raise RuntimeError("the main thread failed")
    assert not [t for t in threading.enumerate() if t.name.startswith("exact-division")]


# -- progress lines -------------------------------------------------------------------------------

def test_progress_lines_come_every_15_seconds_of_the_injected_clock_and_name_a_wait():
    now = [0.0]
    lines: list[str] = []
    budget = DivisionBudget(101, daily_remaining=4321, calls=12)
    progress = Progress(lambda d: budget if d == 101 else None, clock=lambda: now[0],
                        wait_clock=lambda: 1000.0, emit=lines.append)
    progress.start(101, "transaction_lines")
    progress.start(102, "transaction_lines")
    progress.add(101, 3000)
    now[0] = 10.0
    progress.tick()
    assert lines == []
    budget.wait_reason, budget.wait_until = "HTTP 429", 1042.0
    now[0] = 15.0
    progress.tick()
    assert lines == [
        "progress: transaction_lines division 101: 3,000 records, 200 rows/s, 12 calls, 4,321 daily calls left, "
        "waiting 42 s for Exact's minute window (HTTP 429)",
        "progress: transaction_lines division 102: 0 records, 0 rows/s"]
    now[0] = 20.0
    progress.tick()
    assert len(lines) == 2
    progress.end(102)
    assert lines[-1] == "progress: transaction_lines division 102: 0 records (done), 0 rows/s"


@pytest.mark.parametrize("left", [None, 0])
def test_summary_table_reads_unknown_budget(left):
    from tap_exactonline.report import summary_table

    table = summary_table([{"division": 101, "records": {"a": 1200}, "calls": 3, "retries": 0, "waits": 1,
                            "waited_seconds": 2.5, "daily_remaining": left}])
    assert table.splitlines()[1].split() == ["101", "1,200", "3", "0", "1", "2.5", "?" if left is None else "0"]
