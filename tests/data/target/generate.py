"""Regenerates the .singer files and PDFs of this folder: python tests/data/target/generate.py"""

import base64
import json
from pathlib import Path
D = Path(__file__).resolve().parent
F = D / "files"

def pdf(text: str) -> bytes:
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objs = [b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
            b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objs, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref)
    return bytes(out)

files = {
    "invoice-2024-001.pdf": pdf("Purchase invoice 2024-001 from Writeback Example BV, EUR 121.00"),
    "invoice-2024-100.pdf": pdf("Sales invoice 2024-100 to O'Brien & Zonen BV, EUR 605.00"),
    "delivery-note-100.pdf": pdf("Delivery note 100: 5 boxes"),
    "delivery-note-100-v2.pdf": pdf("Delivery note 100 (corrected): 6 boxes, signed on delivery"),
    "credit-note-2024-003.pdf": pdf("Credit note 2024-003: EUR -21.00"),
}
for name, data in files.items():
    (F / name).write_bytes(data)
inline_002 = base64.b64encode(pdf("Purchase invoice 2024-002 from Second Example BV, EUR 242.00")).decode()
inline_receipt = base64.b64encode(pdf("Payment receipt for purchase invoice 2024-002")).decode()

def write(name, msgs):
    with (D / name).open("w") as fh:
        for m in msgs:
            fh.write(json.dumps(m, ensure_ascii=False) + "\n")

def schema(stream, fields, keys, types=None):
    props = {f: {"type": ["string", "null"]} for f in fields}
    for f, t in (types or {}).items():
        props[f] = t
    return {"type": "SCHEMA", "stream": stream, "schema": {"type": "object", "properties": props}, "key_properties": keys}

def rec(stream, **r):
    return {"type": "RECORD", "stream": stream, "record": r}

# 1. CSV-like accounts and contacts (as tap-spreadsheets sends them: snake_case headers, text values)
acc_fields = ["code", "name", "city", "country", "email", "is_supplier"]
con_fields = ["email", "first_name", "last_name", "account_code", "phone"]
accounts = [
    dict(code="WB0001", name="Writeback Example BV", city="Utrecht", country="NL", email="info@writeback.example", is_supplier="true"),
    dict(code="WB0002", name="O'Brien & Zonen BV", city="Amsterdam", country="NL", email="hello@obrien.example", is_supplier="false"),
    dict(code="WB0003", name="Café Ünïcode GmbH", city="Köln", country="DE", email="kontakt@cafe.example", is_supplier="false"),
    dict(code="WB 0004", name="Spaces & Quotes 'Ltd'", city="London", country="GB", email="", is_supplier=""),
]
contacts = [
    dict(email="jan.jansen@writeback.example", first_name="Jan", last_name="Jansen", account_code="WB0001", phone="+31 30 1234567"),
    dict(email="piet@obrien.example", first_name="Piet", last_name="O'Brien", account_code="WB0002", phone=""),
    dict(email="o'neil@obrien.example", first_name="Siobhan", last_name="O'Neil", account_code="WB0002", phone="+31 20 7654321"),
    dict(email="anna@cafe.example", first_name="Anna", last_name="Müller", account_code="WB0003", phone=None),
]
msgs = [schema("accounts", acc_fields, ["code"])] + [rec("accounts", **a) for a in accounts]
msgs += [schema("contacts", con_fields, ["email"])] + [rec("contacts", **c) for c in contacts]
msgs += [{"type": "STATE", "value": {"bookmarks": {"accounts": {"file": "accounts.csv", "line": 4},
                                                   "contacts": {"file": "contacts.csv", "line": 4}}}}]
write("accounts_contacts.singer", msgs)

# 2. Documents with PDF attachments from files and from base64, account by code
doc_schema = {"Subject": {"type": "string"}, "Type": {"type": "integer"}, "AccountCode": {"type": ["string", "null"]},
              "DocumentDate": {"type": ["string", "null"], "format": "date-time"}, "Body": {"type": ["string", "null"]},
              "Attachments": {"type": ["array", "null"], "items": {"type": "object"}},
              "AttachmentPath": {"type": ["string", "null"]}}
docs = [
    dict(Subject="Purchase invoice 2024-001", Type=20, AccountCode="WB0001", DocumentDate="2024-03-01",
         Body="Scanned by the scanning tool", Attachments=[{"Path": "invoice-2024-001.pdf"}]),
    dict(Subject="Purchase invoice 2024-002", Type=20, AccountCode="WB0002", DocumentDate="2024-03-02T00:00:00",
         Body="Received by e-mail",
         Attachments=[{"FileName": "invoice-2024-002.pdf", "Attachment": inline_002}]),
    dict(Subject="Sales invoice 2024-100", Type=10, AccountCode="WB0002", DocumentDate="2024-03-05",
         Body="Webshop order 100", AttachmentPath="invoice-2024-100.pdf;delivery-note-100.pdf"),
]
msgs = [schema("accounts", acc_fields, ["code"])] + [rec("accounts", **a) for a in accounts[:2]]
msgs += [{"type": "SCHEMA", "stream": "documents", "schema": {"type": "object", "properties": doc_schema}, "key_properties": ["Subject"]}]
msgs += [rec("documents", **d) for d in docs]
msgs += [{"type": "STATE", "value": {"bookmarks": {"documents": {"last": "Sales invoice 2024-100"}}}}]
write("documents.singer", msgs)

# 3. The same documents, changed: a new Body, a new date, one more file, a corrected file
changed = json.loads(json.dumps(docs))
changed[0]["Body"] = "Scanned by the scanning tool; approved by Finance"
changed[1]["DocumentDate"] = "2024-03-04"
changed[1]["Attachments"].append({"FileName": "receipt-2024-002.pdf", "Attachment": inline_receipt})
changed[2]["Attachments"] = [{"Path": "invoice-2024-100.pdf"},
                             {"Path": "delivery-note-100-v2.pdf", "FileName": "delivery-note-100.pdf"}]
del changed[2]["AttachmentPath"]
msgs = [{"type": "SCHEMA", "stream": "documents", "schema": {"type": "object", "properties": doc_schema}, "key_properties": ["Subject"]}]
msgs += [rec("documents", **d) for d in changed]
write("documents_changed.singer", msgs)

# 4. The document_attachments stream: files for documents named by subject
att_fields = {"DocumentSubject": {"type": "string"}, "FileName": {"type": "string"},
              "Path": {"type": ["string", "null"]}, "Attachment": {"type": ["string", "null"]}}
msgs = [{"type": "SCHEMA", "stream": "document_attachments", "schema": {"type": "object", "properties": att_fields}, "key_properties": []}]
msgs += [rec("document_attachments", DocumentSubject="Purchase invoice 2024-001", FileName="credit-note-2024-003.pdf", Path="credit-note-2024-003.pdf"),
         rec("document_attachments", DocumentSubject="Purchase invoice 2024-001", FileName="invoice-2024-001.pdf", Path="invoice-2024-001.pdf"),
         rec("document_attachments", DocumentSubject="Purchase invoice 2024-002", FileName="receipt-2024-002.pdf", Attachment=inline_receipt)]
write("document_attachments.singer", msgs)

# 5. Bad input mixed with good records
msgs = [schema("accounts", acc_fields + ["division"], ["code"])]
msgs += [rec("accounts", code="BAD001", city="Nowhere"),                                   # no Name (mandatory)
         rec("accounts", code="OK0001", name="Good Input BV", city="Delft", country="NL", email="good@input.example"),
         rec("accounts", code="BAD002", name="Elsewhere BV", division="999"),               # unknown division
         rec("accounts", code="BAD003", name="Maybe BV", is_supplier="maybe")]              # not a boolean
msgs += [schema("contacts", con_fields + ["account"], ["email"])]
msgs += [rec("contacts", email="nobody@input.example", last_name="Nobody", account_code="NOPE42"),  # unknown account code
         rec("contacts", first_name="No", last_name="Email"),                                      # natural key missing
         rec("contacts", email="guid@input.example", last_name="Guid", account="not-a-guid"),       # not a GUID
         rec("contacts", email="good@input.example", first_name="Goed", last_name="Invoer", account_code="OK0001")]
msgs += [{"type": "SCHEMA", "stream": "documents", "schema": {"type": "object", "properties": doc_schema}, "key_properties": ["Subject"]}]
msgs += [rec("documents", Subject="Bad base64", Type=20, Attachments=[{"FileName": "x.pdf", "Attachment": "this is not base64!"}]),
         rec("documents", Subject="Missing file", Type=20, Attachments=[{"Path": "no-such-file.pdf"}]),
         rec("documents", Subject="Too big", Type=20, Attachments=[{"Path": "big.pdf"}]),
         rec("documents", Subject="Outside the folder", Type=20, Attachments=[{"Path": "../accounts_contacts.singer"}]),
         rec("documents", Subject="Unknown type", Type=999, Body="Exact refuses document type 999"),
         rec("documents", Subject="No type"),
         rec("documents", Subject="Good document", Type=20, AccountCode="OK0001", Attachments=[{"Path": "invoice-2024-001.pdf"}])]
msgs += [{"type": "STATE", "value": {"bookmarks": {"bad": "end"}}}]
write("bad_records.singer", msgs)

# 6. State only after writes: two batches (batch_size 2) and a state message between them
msgs = [schema("accounts", acc_fields, ["code"])]
msgs += [rec("accounts", code=f"ST{i:04d}", name=f"State Test {i} BV", city="Zwolle") for i in range(1, 4)]
msgs += [{"type": "STATE", "value": {"bookmarks": {"accounts": {"line": 3}}}}]
msgs += [rec("accounts", code=f"ST{i:04d}", name=f"State Test {i} BV", city="Zwolle") for i in range(4, 6)]
msgs += [{"type": "STATE", "value": {"bookmarks": {"accounts": {"line": 5}}}}]
write("state_batches.singer", msgs)
