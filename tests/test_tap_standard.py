"""singer-sdk's standard tap tests, against the sandbox, on the curated default streams."""

from __future__ import annotations

import pytest
from singer_sdk.testing import SuiteConfig, get_tap_test_class

from tap_exactonline.tap import TapExactOnline
from exact_sandbox import Sandbox, SandboxHandle
from tests.taprun import catalog_selecting

_sandbox = SandboxHandle(Sandbox(divisions="101", minutely_limit=10_000).start())


def _config(tmp: str) -> dict:
    return {
        "client_id": _sandbox.client_id,
        "client_secret": _sandbox.client_secret,
        "refresh_token": _sandbox.mint_refresh_token(),
        "token_store": f"{tmp}/standard-tests-tokens.json",
        "base_url": _sandbox.url,
        "divisions": [101],
    }


import tempfile  # noqa: E402

_TMP = tempfile.mkdtemp(prefix="tap-standard-")

_CONFIG = _config(_TMP)
# The standard suite syncs every stream; our default selection is a curated
# finance core, so hand it a catalog with everything selected.
_ALL = set(TapExactOnline(config=_CONFIG, validate_config=False).streams)

TestTapExactOnline = get_tap_test_class(
    tap_class=TapExactOnline,
    config=_CONFIG,
    catalog=catalog_selecting(_CONFIG, _ALL),
    suite_config=SuiteConfig(max_records_limit=50, ignore_no_records_for_streams=[]),
)


@pytest.fixture(scope="session", autouse=True)
def _stop_sandbox():
    yield
    _sandbox.stop()
