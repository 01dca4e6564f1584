"""The Exact facade and the one pagination loop, with a fake session (no HTTP)."""

from __future__ import annotations

from datetime import datetime, timezone
from urllib.parse import parse_qs, urlsplit

import pytest

from exactonline_api.api import ExactAPI
from exactonline_api.errors import ExactAPIError, ExactError
from exactonline_api.http import paginate

BASE = "https://start.exactonline.nl"


class FakeSession:
    """Answers GETs from a dict of URL -> envelope and records every URL asked for."""

    def __init__(self, pages: dict[str, object], fail: set[str] = frozenset()):
        self.pages = pages
        self.fail = fail
        self.asked: list[str] = []

    def get_page(self, url, decode=None):
        self.asked.append(url)
        if any(part in url for part in self.fail):
            raise ExactAPIError(403, "no rights", urlsplit(url).path)
        return self.pages[url]

    def paginate(self, url, decode=None):
        return paginate(lambda link: self.get_page(link, decode), url)


def page(rows, next_url=None):
    body = {"results": rows}
    if next_url:
        body["__next"] = next_url
    return {"d": body}


def test_paginate_follows_next_links_and_refuses_another_host():
    pages = {"https://a.example/x": page([1], "https://a.example/x?$skiptoken=1"),
             "https://a.example/x?$skiptoken=1": page([2], "https://evil.example/x?$skiptoken=2")}
    got = []
    with pytest.raises(ExactError, match="another host"):
        for payload in paginate(pages.__getitem__, "https://a.example/x"):
            got.extend(payload["d"]["results"])
    assert got == [1, 2]  # the foreign link is never requested


def test_rows_url_layout_and_query_encoding():
    url = f"{BASE}/api/v1/101/crm/Accounts?$select=ID,Name&$filter=Name%20eq%20'O''Brien'"
    session = FakeSession({url: page([{"ID": 1}], url + "&$skiptoken=x"), url + "&$skiptoken=x": page([{"ID": 2}])})
    api = ExactAPI(session, BASE + "/")
    rows = list(api.rows(101, "crm/Accounts", {"$select": "ID,Name", "$filter": "Name eq 'O''Brien'"}))
    assert [r["ID"] for r in rows] == [1, 2]
    assert session.asked == [url, url + "&$skiptoken=x"]


def test_grants_and_move_dates_cost_two_calls_per_run():
    me = f"{BASE}/api/v1/current/Me?$select=CurrentDivision"
    divisions = f"{BASE}/api/v1/7/system/Divisions?$select=Code,Description,DivisionMoveDate"
    session = FakeSession({me: page([{"CurrentDivision": 7}]),
                           divisions: page([{"Code": 7, "DivisionMoveDate": None},
                                            {"Code": 8, "DivisionMoveDate": "/Date(1704067200000)/"}])})
    session.get_json = session.get_page  # the access module reads through get_json
    api = ExactAPI(session, BASE)
    assert api.grants().codes == [7, 8]
    assert api.move_dates() == {7: None, 8: "2023-12-31T23:00:00+00:00"}
    assert api.grants().refused([8, 9]) == {9: api.grants().refused([9])[9]}
    assert session.asked == [me, divisions]


def test_sync_timestamp_at_asks_exact_with_the_endpoint_name_and_a_local_moment():
    session = FakeSession({})
    session.get_page = lambda url, decode=None: (session.asked.append(url), page([{"TimeStampAsBigInt": "123"}]))[1]
    api = ExactAPI(session, BASE)
    assert api.sync_timestamp_at(101, "sync/Financial/TransactionLines",
                                 datetime(2024, 1, 1, tzinfo=timezone.utc)) == 123
    asked = urlsplit(session.asked[0])
    assert asked.path == "/api/v1/101/read/sync/Sync/SyncTimestamp"
    query = parse_qs(asked.query)
    assert query["endPoint"] == ["'TransactionLines'"]
    assert query["modified"] == ["datetime'2024-01-01T01:00:00'"]  # Amsterdam wall-clock time
    session.get_page = lambda url, decode=None: page([])
    assert api.sync_timestamp_at(101, "sync/Deleted", datetime(2024, 1, 1, tzinfo=timezone.utc)) == 1
