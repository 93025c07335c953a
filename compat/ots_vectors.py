"""Bytes made by the official `tablestore` package, for SINK_OTS's Rust codec to read.

`python compat/ots_vectors.py > crates/sluice-connect/src/sinks/ots/testdata/vectors.json`
writes them; the Rust tests (`sinks/ots/vectors.rs`) decode each with Sluice's codec and
compare with the values here, and encode the same rows and compare byte for byte.
test_connector_ots.py checks that the committed file is exactly what the package makes now.
Covered: PlainBuffer PUT and UPDATE rows (every value type, a delete cell), the protobuf
DescribeTableResponse, BatchWriteRowResponse with per-row errors and Error, and the request and
response signatures of `SignV2`.
"""

import json

from tablestore.auth import RequestContext, SignV2
from tablestore.credentials import Credentials
from tablestore.plainbuffer.plain_buffer_builder import PlainBufferBuilder
import tablestore.protobuf.table_store_pb2 as pb2

KEY = [("id", 42), ("k", "clé")]
PUT_COLUMNS = [("s", "héllo"), ("i", -5), ("d", 1.5), ("b", True), ("f", False), ("x", bytearray(b"\x00\x01\xff"))]


def cell(value):
    if isinstance(value, bool):
        return {"bool": value}
    if isinstance(value, int):
        return {"int": value}
    if isinstance(value, float):
        return {"double": value}
    if isinstance(value, str):
        return {"str": value}
    return {"blob": bytes(value).hex()}


def vectors():
    out = {}
    out["put_row"] = {
        "hex": bytes(PlainBufferBuilder.serialize_for_put_row(KEY, PUT_COLUMNS)).hex(),
        "primary_key": [[n, cell(v)] for n, v in KEY],
        "attributes": [[n, cell(v)] for n, v in PUT_COLUMNS],
    }
    update = {"put": [("a", "y"), ("n", 7)], "delete_all": ["gone"]}
    out["update_row"] = {
        "hex": bytes(PlainBufferBuilder.serialize_for_update_row(KEY, update)).hex(),
        "primary_key": [[n, cell(v)] for n, v in KEY],
        "attributes": [["a", cell("y")], ["n", cell(7)], ["gone", None]],
    }
    d = pb2.DescribeTableResponse()
    d.table_meta.table_name = "orders"
    for name, kind in (("id", pb2.INTEGER), ("k", pb2.STRING), ("b", pb2.BINARY)):
        pk = d.table_meta.primary_key.add()
        pk.name, pk.type = name, kind
    d.reserved_throughput_details.capacity_unit.read = 0
    d.reserved_throughput_details.capacity_unit.write = 0
    d.reserved_throughput_details.last_increase_time = 1700000000
    d.table_options.time_to_live = -1
    d.table_options.max_versions = 1
    out["describe_table_response"] = {"hex": d.SerializeToString().hex(), "table": "orders",
                                      "primary_key": [["id", 1], ["k", 2], ["b", 3]]}
    b = pb2.BatchWriteRowResponse()
    t = b.tables.add()
    t.table_name = "orders"
    results = [(True, None, None), (False, "OTSServerBusy", "Server is busy."),
               (False, "OTSParameterInvalid", "Validate PK type fail.")]
    for ok, code, message in results:
        r = t.rows.add()
        r.is_ok = ok
        r.consumed.capacity_unit.write = 1
        if code:
            r.error.code, r.error.message = code, message
    out["batch_write_row_response"] = {"hex": b.SerializeToString().hex(), "table": "orders",
                                       "rows": [[ok, code, message] for ok, code, message in results]}
    e = pb2.Error()
    e.code, e.message = "OTSAuthFailed", "The AccessKeyID is disabled."
    out["error"] = {"hex": e.SerializeToString().hex(), "code": e.code, "message": e.message}
    headers = {"x-ots-date": "2026-11-30T20:00:00.000Z", "x-ots-apiversion": "2015-12-31",
               "x-ots-accesskeyid": "otsTestId", "x-ots-instancename": "sluice",
               "x-ots-contentmd5": "1B2M2Y8AsgTpgAmY7PhCfg=="}
    signed = dict(headers)
    signer = SignV2("utf-8")
    signer.make_request_signature_and_add_headers("/BatchWriteRow", signed,
                                                  RequestContext(Credentials("otsTestId", "otsTestKey")))
    response_headers = {"x-ots-contentmd5": "1B2M2Y8AsgTpgAmY7PhCfg==", "x-ots-requestid": "r1",
                        "x-ots-date": "2026-11-30T20:00:01.000Z", "x-ots-contenttype": "protocol buffer"}
    out["signature"] = {"api": "BatchWriteRow", "access_key": "otsTestKey", "headers": headers,
                        "request": signed["x-ots-signature"], "response_headers": response_headers,
                        "response": signer.make_response_signature("/BatchWriteRow", response_headers, "otsTestKey")}
    return out


def render():
    return json.dumps(vectors(), indent=1, sort_keys=True, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    print(render(), end="")
