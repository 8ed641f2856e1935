//! Real exchanges recorded from official MCP servers (`make fixtures`,
//! `filter/testdata/exchanges/`), replayed through a stream with the answer cut into chunks
//! of several sizes. The records must agree with what an independent reading of the same
//! bytes expects (computed by `scripts/capture_fixtures.py` when it recorded them).

#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

use serde_json::Value;

use super::*;
use crate::host::fake::FakeHost;
use crate::testkit::exchange::Exchange;

const FIXTURES: [(&str, &str); 8] = [
    (
        "server-everything",
        include_str!("../../testdata/exchanges/server-everything.json"),
    ),
    (
        "python-sdk-sse",
        include_str!("../../testdata/exchanges/python-sdk-sse.json"),
    ),
    (
        "python-sdk-json",
        include_str!("../../testdata/exchanges/python-sdk-json.json"),
    ),
    (
        "python-sdk-stateless",
        include_str!("../../testdata/exchanges/python-sdk-stateless.json"),
    ),
    (
        "rmcp-sse",
        include_str!("../../testdata/exchanges/rmcp-sse.json"),
    ),
    (
        "rmcp-json",
        include_str!("../../testdata/exchanges/rmcp-json.json"),
    ),
    // The stateless 2026-07-28 generation: the official Python SDK, and the conformance
    // suite's reference server (github.com/modelcontextprotocol/conformance).
    (
        "python-sdk-2026",
        include_str!("../../testdata/exchanges/python-sdk-2026.json"),
    ),
    (
        "conformance-2026",
        include_str!("../../testdata/exchanges/conformance-2026.json"),
    ),
];

const CFG: &str = r#"{"audit":{"cluster":"c","batch_max_records":1000,"batch_max_bytes":10000000},"mcp":{"record_notifications":true}}"#;

fn borrow(h: &[(String, String)]) -> Vec<(&str, &str)> {
    h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// Runs one recorded exchange, its answer delivered in `chunk`-byte pieces.
fn replay(host: &FakeHost, r: &Root, ex: &Value, chunk: usize) {
    let pairs = |v: &Value| -> Vec<(String, String)> {
        v.as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect()
    };
    let (req, resp) = (&ex["request"], &ex["response"]);
    let (headers, response_headers) = (pairs(&req["headers"]), pairs(&resp["headers"]));
    let status = resp["status"].as_u64().unwrap().to_string();
    let chunks: Vec<&[u8]> = resp["body"]
        .as_str()
        .unwrap()
        .as_bytes()
        .chunks(chunk.max(1))
        .collect();
    host.exchange(
        r,
        &Exchange {
            method: req["method"].as_str().unwrap(),
            headers: &borrow(&headers),
            body: req["body"].as_str().unwrap(),
            status: &status,
            response_headers: &borrow(&response_headers),
            chunks: &chunks,
            ..Exchange::default()
        },
    );
}

fn check(file: &str, chunk: usize) {
    let doc: Value = serde_json::from_str(
        FIXTURES
            .iter()
            .find(|(n, _)| *n == file)
            .map(|(_, d)| *d)
            .unwrap(),
    )
    .unwrap();
    let host = FakeHost::default();
    // Two workers of one process, taking the exchanges in turn.
    let mut workers = [Root::default(), Root::default()];
    for w in &mut workers {
        assert!(w.configure(&host, CFG.as_bytes()));
    }
    // The operation each exchange's call was recorded in, by exchange name.
    let mut operations: std::collections::HashMap<String, Value> = Default::default();
    for (i, ex) in doc["exchanges"].as_array().unwrap().iter().enumerate() {
        let r = &mut workers[i % 2];
        replay(&host, r, ex, chunk);
        let recs = host.flush(r);
        let name = format!("{file} / {} (chunks of {chunk})", ex["name"]);
        let expect = &ex["expect"];
        let calls = expect["calls"].as_array().unwrap();
        for call in calls {
            let rec = recs
                .iter()
                .find(|rec| {
                    matches!(rec["kind"].as_str(), Some("command" | "session.start"))
                        && rec["mcp"]["id"] == call["id"]
                })
                .unwrap_or_else(|| panic!("{name}: no record for {call}: {recs:#?}"));
            assert_eq!(rec["mcp"]["method"], call["method"], "{name}");
            assert_eq!(rec["outcome"]["status"], call["status"], "{name}");
            assert_eq!(
                rec["mcp"]["input_requests"],
                call.get("input_requests").cloned().unwrap_or(Value::Null),
                "{name}"
            );
            let operation = &rec["operation"];
            assert!(
                operation.is_string(),
                "{name}: every command names its operation"
            );
            match ex["expect"]["operation_of"].as_str() {
                Some(first) => assert_eq!(Some(operation), operations.get(first), "{name}"),
                None => {
                    operations.insert(ex["name"].as_str().unwrap().to_string(), operation.clone());
                }
            }
            let count = |k: &str| rec["outcome"][k].as_u64().unwrap_or(0);
            assert_eq!(
                count("notifications"),
                expect["notifications"].as_u64().unwrap(),
                "{name}"
            );
            assert_eq!(
                count("server_requests"),
                expect["server_requests"].as_u64().unwrap(),
                "{name}"
            );
        }
        let server_msgs = recs
            .iter()
            .filter(|rec| rec["mcp"]["direction"] == "server_to_client")
            .count() as u64;
        assert_eq!(
            server_msgs,
            expect["notifications"].as_u64().unwrap() + expect["server_requests"].as_u64().unwrap(),
            "{name}: server messages recorded as they came"
        );
        let decode_errors = recs.iter().filter(|r| r["kind"] == "decode.error").count();
        let want = usize::from(expect["decode_error"].as_bool().unwrap_or(false));
        assert_eq!(decode_errors, want, "{name}: {recs:#?}");
        if ex["name"] == "initialize" && ex["response"]["headers"]["mcp-session-id"].is_string() {
            assert_eq!(recs[0]["kind"], "session.start", "{name}");
            assert_eq!(recs[0]["mcp"]["client"]["name"], "mcptrail-fixtures");
        }
        if ex["request"]["method"] == "DELETE" {
            assert_eq!(recs.last().unwrap()["kind"], "session.end", "{name}");
            let commands = recs.last().unwrap()["session_summary"]["commands"]
                .as_u64()
                .unwrap();
            assert!(commands >= calls.len() as u64, "{name}");
        }
    }
}

#[test]
fn recorded_exchanges_decode_as_an_independent_reading_says() {
    for (file, _) in FIXTURES {
        for chunk in [1, 7, 64, 1 << 20] {
            check(file, chunk);
        }
    }
}

#[test]
fn fixtures_cover_what_the_decoder_must_see() {
    let all: Vec<Value> = FIXTURES
        .iter()
        .flat_map(|(_, d)| {
            serde_json::from_str::<Value>(d).unwrap()["exchanges"]
                .as_array()
                .unwrap()
                .clone()
        })
        .collect();
    let has = |f: &dyn Fn(&Value) -> bool| all.iter().any(f);
    let ct = |e: &Value| {
        e["response"]["headers"]["content-type"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    assert!(has(&|e| ct(e).starts_with("text/event-stream")));
    assert!(has(
        &|e| ct(e).starts_with("application/json") && e["response"]["status"] == 200
    ));
    assert!(has(&|e| e["expect"]["notifications"].as_u64() > Some(0)));
    assert!(has(&|e| e["expect"]["server_requests"].as_u64() > Some(0)));
    assert!(has(&|e| e["request"]["method"] == "DELETE"));
    assert!(has(&|e| e["request"]["body"]
        .as_str()
        .unwrap()
        .starts_with('[')));
    assert!(has(&|e| e["expect"]["calls"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["status"] == "error")));
    // The stateless generation: multi-round legs to link, a listen stream.
    assert!(has(&|e| e["expect"]["calls"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["status"] == "input_required")));
    assert!(has(&|e| e["expect"]["operation_of"].is_string()
        && e["request"]["body"]
            .as_str()
            .unwrap()
            .contains("requestState")));
    assert!(has(&|e| e["expect"]["operation_of"].is_string()
        && !e["request"]["body"]
            .as_str()
            .unwrap()
            .contains("requestState")));
    assert!(has(&|e| e["request"]["body"]
        .as_str()
        .unwrap()
        .contains("subscriptions/listen")
        && e["expect"]["notifications"].as_u64() > Some(0)));
}
