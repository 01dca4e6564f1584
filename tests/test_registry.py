"""The registry derives every stream from metadata; these pin its rules."""

import json
from collections import Counter

from exactonline_api import registry
from exactonline_api.registry import BULK, PARENT, STANDARD, SYNC


def test_every_sync_and_bulk_endpoint_is_reachable():
    ents = registry.entities().values()
    raw = registry.raw_metadata()["endpoints"]
    syncs = {e["path"] for e in raw if e["kind"] == "sync"}
    bulks = {e["path"] for e in raw if e["kind"] == "bulk"}
    assert len(syncs) == 60 and len(bulks) == 21
    assert {e.sync.path for e in ents if e.sync} == syncs
    assert {e.bulk.path for e in ents if e.bulk} == bulks


def test_every_listable_standard_collection_is_a_stream():
    covered = {e.standard.path for e in registry.entities().values() if e.standard}
    for ep in registry.endpoints().values():
        if ep.kind == STANDARD and "GET" in ep.methods and not ep.beta and ep.path not in registry.NOT_LISTABLE:
            assert ep.path in covered, ep.path


def test_cheapest_api_is_chosen():
    ents = registry.entities()
    assert ents["transaction_lines"].api == SYNC
    assert ents["transaction_lines"].source.path == "sync/Financial/TransactionLines"
    assert ents["receivables"].api == BULK
    assert ents["sales_invoice_lines"].api == BULK
    assert ents["purchase_entry_lines"].api == PARENT
    assert ents["purchase_entry_lines"].parent.parent.path == "purchaseentry/PurchaseEntries"
    assert ents["journals"].api == STANDARD
    # a master entity that a parent also expands is not a line collection
    assert ents["warehouses"].api == STANDARD


def test_names_are_unique_snake_case_and_keys_include_division():
    ents = registry.entities()
    assert len(ents) > 250
    for name, ent in ents.items():
        assert name == name.lower() and " " not in name
        assert "Division" in ent.key
        assert any(f.name == "Division" for f in ent.fields)
    assert ents["sales_invoices"].key == ("InvoiceID", "Division")
    assert {"crm_reason_codes", "logistics_reason_codes", "divisions", "hrm_divisions"} <= set(ents)


def test_sync_streams_carry_their_deleted_entity_type():
    ents = registry.entities()
    assert ents["transaction_lines"].deleted_entity_type == 1
    assert ents["accounts"].deleted_entity_type == 2
    numbers = Counter(e.deleted_entity_type for e in ents.values() if e.deleted_entity_type)
    assert all(count == 1 for count in numbers.values())


def test_metadata_copy_is_what_the_regeneration_script_writes():
    """The repo's copy is a fixed point of scripts/update_endpoints.py: trimmed, sorted and
    serialised exactly as the script writes it, so a hand edit shows here. (Checked against
    the repo alone; the shared research file is not part of a clone.)"""
    import importlib.util
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("upd", root / "scripts" / "update_endpoints.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    copy = registry.raw_metadata()
    as_source = {"meta": {"sources": copy["generated_from"]}, **{k: v for k, v in copy.items() if k != "generated_from"}}
    assert module.trim(as_source) == copy
    written = json.dumps(copy, indent=0, sort_keys=True) + "\n"
    assert module.TARGET.read_text() == written
