//! Tests against bytes the official `tablestore` Python package made (`testdata/vectors.json`,
//! written by compat/ots_vectors.py; compat/test_connector_ots.py checks the file is exactly
//! what the package makes today): Sluice decodes the package's PlainBuffer rows and protobuf
//! responses, encodes the same rows byte for byte, and signs as the package does.

use prost::Message;
use serde_json::Value as Json;

use super::client::{request_signature, response_signature};
use super::plainbuffer::{decode_rows, encode_row, Cell, DELETE_ALL_VERSION};
use super::proto;

fn vectors() -> Json {
    serde_json::from_str(include_str!("testdata/vectors.json")).unwrap()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn cell(v: &Json) -> Cell {
    let (kind, value) = v.as_object().unwrap().iter().next().unwrap();
    match kind.as_str() {
        "int" => Cell::Int(value.as_i64().unwrap()),
        "double" => Cell::Double(value.as_f64().unwrap()),
        "bool" => Cell::Bool(value.as_bool().unwrap()),
        "str" => Cell::Str(value.as_str().unwrap().into()),
        "blob" => Cell::Blob(unhex(value.as_str().unwrap())),
        other => panic!("{other}"),
    }
}

fn named(list: &Json) -> Vec<(String, Option<Cell>)> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let value = (!p[1].is_null()).then(|| cell(&p[1]));
            (p[0].as_str().unwrap().to_string(), value)
        })
        .collect()
}

/// Decodes the package's row, compares it with the values, and encodes the same row.
fn check_row(v: &Json) {
    let bytes = unhex(v["hex"].as_str().unwrap());
    let key = named(&v["primary_key"]);
    let attrs = named(&v["attributes"]);
    let rows = decode_rows(&bytes).expect("the package's row decodes");
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    let got_key: Vec<_> = row
        .primary_key
        .iter()
        .map(|(n, c)| (n.clone(), Some(c.clone())))
        .collect();
    assert_eq!(got_key, key);
    let got_attrs: Vec<_> = row
        .attributes
        .iter()
        .map(|a| (a.name.clone(), a.value.clone()))
        .collect();
    assert_eq!(got_attrs, attrs);
    for a in &row.attributes {
        let want = a.value.is_none().then_some(DELETE_ALL_VERSION);
        assert_eq!(a.op, want, "{}", a.name);
    }
    let key_refs: Vec<(&str, &Cell)> = key
        .iter()
        .map(|(n, c)| (n.as_str(), c.as_ref().unwrap()))
        .collect();
    let attr_refs: Vec<(&str, Option<&Cell>)> = attrs
        .iter()
        .map(|(n, c)| (n.as_str(), c.as_ref()))
        .collect();
    assert_eq!(encode_row(&key_refs, &attr_refs), bytes, "byte for byte");
}

#[test]
fn put_rows_of_the_package_decode_and_encode_byte_for_byte() {
    check_row(&vectors()["put_row"]);
}

#[test]
fn update_rows_with_a_delete_cell_decode_and_encode_byte_for_byte() {
    check_row(&vectors()["update_row"]);
}

#[test]
fn describe_table_responses_decode() {
    let v = &vectors()["describe_table_response"];
    let resp =
        proto::DescribeTableResponse::decode(unhex(v["hex"].as_str().unwrap()).as_slice()).unwrap();
    assert_eq!(resp.table_meta.table_name, v["table"]);
    let key: Vec<(String, i64)> = resp
        .table_meta
        .primary_key
        .iter()
        .map(|k| (k.name.clone(), k.r#type as i64))
        .collect();
    let want: Vec<(String, i64)> = v["primary_key"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_str().unwrap().into(), p[1].as_i64().unwrap()))
        .collect();
    assert_eq!(key, want);
}

#[test]
fn batch_write_row_responses_with_row_errors_decode() {
    let v = &vectors()["batch_write_row_response"];
    let resp =
        proto::BatchWriteRowResponse::decode(unhex(v["hex"].as_str().unwrap()).as_slice()).unwrap();
    assert_eq!(resp.tables.len(), 1);
    assert_eq!(resp.tables[0].table_name, v["table"]);
    let rows = &resp.tables[0].rows;
    let want = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), want.len());
    for (got, want) in rows.iter().zip(want) {
        assert_eq!(got.is_ok, want[0].as_bool().unwrap());
        assert_eq!(
            got.error.as_ref().map(|e| e.code.as_str()),
            want[1].as_str()
        );
        assert_eq!(
            got.error.as_ref().and_then(|e| e.message.as_deref()),
            want[2].as_str()
        );
    }
}

#[test]
fn errors_decode() {
    let v = &vectors()["error"];
    let e = proto::Error::decode(unhex(v["hex"].as_str().unwrap()).as_slice()).unwrap();
    assert_eq!(e.code, v["code"]);
    assert_eq!(e.message.as_deref(), v["message"].as_str());
    // And what Sluice encodes, the package's bytes.
    assert_eq!(e.encode_to_vec(), unhex(v["hex"].as_str().unwrap()));
}

#[test]
fn signatures_are_the_packages() {
    let v = &vectors()["signature"];
    let api = v["api"].as_str().unwrap();
    let key = v["access_key"].as_str().unwrap();
    let headers: Vec<(&str, String)> = v["headers"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, x)| (k.as_str(), x.as_str().unwrap().to_string()))
        .collect();
    assert_eq!(request_signature(api, &headers, key), v["request"]);
    let response = v["response_headers"].as_object().unwrap();
    let pairs = response
        .iter()
        .map(|(k, x)| (k.as_str(), x.as_str().unwrap()));
    assert_eq!(response_signature(api, pairs, key), v["response"]);
}
