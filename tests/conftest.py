"""Shared fixtures: a fresh Exact Online sandbox per test (exact_sandbox), and the one
PostgreSQL every test that needs one uses (tests/pg.py)."""

from __future__ import annotations

import os
from typing import Any, Callable, Iterator

import pytest

from exact_sandbox import Sandbox, SandboxHandle


@pytest.fixture(scope="session")
def pg_admin_dsn() -> Iterator[str]:
    """``E2E_PG_DSN`` (default: the local server), else the embedded server: never a skip."""
    from tests.pg import admin_dsn

    with admin_dsn() as dsn:
        yield dsn


@pytest.fixture
def sandbox() -> Iterator[SandboxHandle]:
    """A sandbox with Exact's defaults and fresh data, on an ephemeral port."""
    handle = SandboxHandle(Sandbox().start())
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def sandbox_factory() -> Iterator[Callable[..., SandboxHandle]]:
    """``sandbox_factory(volumes={"transaction_lines": 5000}, access_token_lifetime=2, ...)``."""
    started: list[SandboxHandle] = []

    def make(volumes: dict[str, int] | None = None, **knobs: Any) -> SandboxHandle:
        handle = SandboxHandle(Sandbox(volumes=volumes, **knobs).start())
        started.append(handle)
        return handle

    try:
        yield make
    finally:
        for handle in started:
            handle.stop()


class SandboxClient:
    """A keep-alive ``requests`` session holding a real access token for one sandbox (tests only)."""

    def __init__(self, handle: SandboxHandle, divisions: list[int] | None = None) -> None:
        import requests

        self.handle = handle
        self.session = requests.Session()
        self.token = handle.access_token(divisions)
        self.session.headers.update({"Authorization": f"Bearer {self.token}", "Accept": "application/json"})

    def url(self, division: int | None, path: str) -> str:
        return self.handle.api_url(division, path)

    def get(self, division: int | None, path: str, params: dict[str, str] | None = None, **kwargs: Any):
        return self.session.get(self.url(division, path), params=params, **kwargs)

    def post(self, division: int, path: str, body: Any = None, **kwargs: Any):
        return self.session.post(self.url(division, path), json=body, **kwargs)

    def put(self, division: int, path: str, body: Any = None, **kwargs: Any):
        return self.session.put(self.url(division, path), json=body, **kwargs)

    def delete(self, division: int, path: str, **kwargs: Any):
        return self.session.delete(self.url(division, path), **kwargs)

    def pages(self, division: int | None, path: str, params: dict[str, str] | None = None) -> list[dict]:
        """Every page (the ``d`` objects) following ``__next`` verbatim."""
        pages, response = [], self.get(division, path, params)
        while True:
            assert response.status_code == 200, response.text
            body = response.json()["d"]
            pages.append(body)
            if "__next" not in body:
                return pages
            response = self.session.get(body["__next"])


@pytest.fixture
def sandbox_client() -> Callable[..., SandboxClient]:
    """``sandbox_client(handle, divisions=None)`` -> a session with a bearer token."""
    return SandboxClient


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test sits where its marker says: under tests/e2e/ exactly when marked e2e.

    ``-m "not e2e"`` (the fast run) and the e2e directory then select the same tests, and a
    slow test cannot slip into the fast run unmarked.
    """
    e2e_dir = config.rootpath / "tests" / "e2e"
    misplaced = [
        item.nodeid for item in items
        if (item.get_closest_marker("e2e") is not None) != (e2e_dir in item.path.parents)
    ]
    if misplaced:
        raise pytest.UsageError(
            "tests whose e2e marker does not match their place (mark tests under tests/e2e/ with "
            "`pytestmark = pytest.mark.e2e`, move others out): " + ", ".join(misplaced))
    # Longest first: the README walk-through (minutes on its own), the other end-to-end tests, the
    # slow ones, then the rest (stable within each). scripts/test.sh hands tests to the workers two
    # at a time in this order, so the long tests start at once on every worker and the short ones
    # fill the gaps, instead of one worker finishing its queue of long tests minutes after the others.
    items.sort(key=lambda item: next(rank for rank, marker in enumerate(("readme", "e2e", "slow", None))
                                     if marker is None or item.get_closest_marker(marker)))
    # xdist's load scheduler starts each worker on two consecutive tests: each README test (its
    # parts, a minute or more each, come first in their module) shares its pair with another e2e
    # test, so the parts start at once on separate workers instead of one after the other on one.
    readme = [item for item in items if item.get_closest_marker("readme")]
    rest = items[len(readme):]
    items[:] = [test for pair in zip(readme, rest) for test in pair] + readme[len(rest):] + rest[len(readme):]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI a skipped test fails the run: on a fresh clone with PostgreSQL up nothing may skip
    (a skip hides exactly the check that was meant to run)."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if os.environ.get("CI") and skipped and exitstatus == 0:
        reporter.write_line(f"CI: {len(skipped)} test(s) skipped; a skip fails CI (the SKIPPED lines say which)", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
