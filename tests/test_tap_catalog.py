"""The tap hands singer-sdk only the selected entries of its input catalog (tap_exactonline/catalog.py).

What must not change is what is selected: every stream and property the SDK would select on the
whole catalog, and nothing else, for every way a catalog can say it.
"""

from __future__ import annotations

import copy

from singer_sdk.singerlib import Catalog

from tap_exactonline.catalog import is_selected, selected_only
from tap_exactonline.tap import TapExactOnline
from tests.taprun import catalog_selecting, discovered_catalog, run_tap, tap_config

CONFIG = {"client_id": "id", "client_secret": "secret", "divisions": [1]}


def _root(entry: dict) -> dict:
    return next(md["metadata"] for md in entry["metadata"] if not md["breadcrumb"])


# Each way a catalog's root entry can say whether its stream is selected (Meltano writes the
# first two; hand-made catalogs and other tools the rest).
def _selected(entry):
    _root(entry)["selected"] = True


def _deselected(entry):
    _root(entry)["selected"] = False


def _by_default(entry):
    _root(entry).pop("selected", None)
    _root(entry)["selected-by-default"] = True


def _not_by_default(entry):
    _root(entry).pop("selected", None)
    _root(entry)["selected-by-default"] = False


def _deselected_but_automatic(entry):
    _root(entry).update(selected=False, inclusion="automatic")


def _selected_but_unsupported(entry):
    _root(entry).update(selected=True, inclusion="unsupported")


def _no_root_entry(entry):
    entry["metadata"] = [md for md in entry["metadata"] if md["breadcrumb"]]


def _no_metadata(entry):
    entry["metadata"] = []


WAYS = [_selected, _deselected, _by_default, _not_by_default, _deselected_but_automatic,
        _selected_but_unsupported, _no_root_entry, _no_metadata]


def _mixed_catalog() -> dict:
    catalog = discovered_catalog(CONFIG)
    for i, entry in enumerate(catalog["streams"]):
        WAYS[i % len(WAYS)](entry)
    return catalog


def test_the_tap_selects_exactly_the_streams_the_sdk_selects_on_the_whole_catalog():
    catalog = _mixed_catalog()
    sdk = {e.tap_stream_id: e.metadata.resolve_selection().get((), True)
           for e in Catalog.from_dict(copy.deepcopy(catalog)).streams}

    tap = TapExactOnline(config=dict(CONFIG), catalog=copy.deepcopy(catalog), validate_config=False)

    assert {name: stream.selected for name, stream in tap.streams.items()} == sdk
    # The SDK's rules for each way (both answers occur, so the comparison above can fail).
    assert {way.__name__: sdk[e["tap_stream_id"]] for way, e in zip(WAYS, catalog["streams"], strict=False)} == {
        "_selected": True, "_deselected": False, "_by_default": True, "_not_by_default": False,
        "_deselected_but_automatic": True, "_selected_but_unsupported": False, "_no_root_entry": True,
        "_no_metadata": True}
    # What the SDK was given: only the selected entries, not the 268.
    assert len(tap.input_catalog.streams) == sum(sdk.values()) < len(sdk)


def test_a_selected_streams_property_selection_and_schema_reach_the_records(sandbox, tmp_path):
    config = tap_config(sandbox, tmp_path)
    catalog = catalog_selecting(config, {"gl_accounts"}, {"gl_accounts": {"Code", "Description"}})

    out = run_tap(config, catalog=catalog)

    assert set(out.records) == {"gl_accounts"}
    keys = {k for row in out.records["gl_accounts"] for k in row}
    # The chosen properties and the automatic ones (key, replication key), nothing else.
    assert {"Code", "Description"} <= keys
    assert "BalanceSide" not in keys and "SearchCode" not in keys
    assert len(keys) < 10


def test_an_entry_it_cannot_read_is_left_to_the_sdk():
    broken = {"tap_stream_id": "gl_accounts", "metadata": [{"metadata": {"selected": False}}]}

    assert is_selected(broken) and is_selected("not an entry") and is_selected({"metadata": 7})
    assert selected_only({"streams": [broken]})["streams"] == [broken]
    assert selected_only(None) is None and selected_only("catalog.json") == "catalog.json"
