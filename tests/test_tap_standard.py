"""singer-sdk's standard tap tests, against the sandbox, on a representative set of streams.

The per-stream tests check sandbox rows typed from endpoints.json against schemas typed
from the same file, so running them on all 268 streams adds time, not checking. They run
on the default selection (which covers every API kind: sync, bulk, standard, through the
parent, and ``deleted``) plus the first stream of any kind it might one day lack. The
per-property attribute tests are left out; breadth comes from tests/test_all_streams.py
(every schema), tests/test_edm_types.py (every Edm type) and tests/test_stream_table.py.
"""

from __future__ import annotations

import tempfile

import pytest
from singer_sdk.testing import SuiteConfig, get_tap_test_class
from typing_extensions import override

from exactonline_api.registry import DEFAULT_SELECTED, entities
from tap_exactonline.tap import TapExactOnline
from exact_sandbox import Sandbox, SandboxHandle


def representative_streams() -> set[str]:
    first_of_kind: dict[str, str] = {}
    for name, entity in entities().items():
        first_of_kind.setdefault(entity.api, name)
    return set(DEFAULT_SELECTED) | set(first_of_kind.values()) | {"deleted"}


REPRESENTATIVE = representative_streams()


class RepresentativeTap(TapExactOnline):
    """The tap with only the representative streams, so the SDK generates tests for those."""

    @override
    def discover_streams(self) -> list:
        return [s for s in super().discover_streams() if s.name in REPRESENTATIVE]


# Built at import: singer-sdk generates the test class from a config at collection time.
_sandbox = SandboxHandle(Sandbox(divisions="101", minutely_limit=10_000).start())
_CONFIG = {
    "client_id": _sandbox.client_id,
    "client_secret": _sandbox.client_secret,
    "refresh_token": _sandbox.mint_refresh_token(),
    "token_store": f"{tempfile.mkdtemp(prefix='tap-standard-')}/tokens.json",
    "base_url": _sandbox.url,
    "divisions": [101],
}


def _all_selected(config: dict) -> dict:
    catalog = RepresentativeTap(config=config, validate_config=False).catalog_dict
    for entry in catalog["streams"]:
        for md in entry["metadata"]:
            if not md["breadcrumb"]:
                md["metadata"]["selected"] = True
    return catalog


TestTapExactOnline = get_tap_test_class(
    tap_class=RepresentativeTap,
    config=_CONFIG,
    catalog=_all_selected(_CONFIG),
    include_stream_attribute_tests=False,
    suite_config=SuiteConfig(max_records_limit=50, ignore_no_records_for_streams=[]),
)


@pytest.fixture(scope="session", autouse=True)
def _stop_sandbox():
    yield
    _sandbox.stop()


def test_the_representative_set_covers_every_api_kind_and_the_deletion_log():
    kinds = {entities()[name].api for name in REPRESENTATIVE}
    assert kinds == {entity.api for entity in entities().values()}
    assert {"deleted", "divisions"} <= REPRESENTATIVE and set(DEFAULT_SELECTED) <= REPRESENTATIVE
    assert sorted(RepresentativeTap(config=_CONFIG, validate_config=False).streams) == sorted(REPRESENTATIVE)
