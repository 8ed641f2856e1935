//! Streams over time: server messages on SSE answers, `GET` streams resumed with
//! `Last-Event-ID`, undecodable answers, answers that end in trailers.

#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

use serde_json::Value;

use super::fake::FakeHost;
use super::*;

/// How an answer ends.
#[derive(Clone, Copy, PartialEq)]
enum End {
    Body,
    Trailers,
    /// The connection goes away (no end of stream).
    Cut,
}

/// One exchange: the request, then the answer in `chunks`.
struct Ex<'a> {
    method: &'a str,
    headers: &'a [(&'a str, &'a str)],
    body: &'a str,
    status: &'a str,
    content_type: &'a str,
    chunks: &'a [&'a str],
    end: End,
}

impl Default for Ex<'_> {
    fn default() -> Self {
        Self {
            method: "POST",
            headers: &[("mcp-session-id", "S1")],
            body: "",
            status: "200",
            content_type: "text/event-stream",
            chunks: &[],
            end: End::Body,
        }
    }
}

fn run(host: &FakeHost, r: &Root, ex: &Ex<'_>) {
    host.clear_headers(Headers::Request);
    host.clear_headers(Headers::Response);
    host.set_header(Headers::Request, ":path", "/mcp");
    host.set_header(Headers::Request, ":method", ex.method);
    for (k, v) in ex.headers {
        host.set_header(Headers::Request, k, v);
    }
    let mut s = r.new_stream(1).unwrap();
    s.on_request_headers(host, ex.body.is_empty());
    if !ex.body.is_empty() {
        host.set_body(Body::Request, ex.body.as_bytes());
        s.on_request_body(host, ex.body.len(), true);
    }
    host.set_header(Headers::Response, ":status", ex.status);
    host.set_header(Headers::Response, "content-type", ex.content_type);
    s.on_response_headers(host, false);
    for (i, c) in ex.chunks.iter().enumerate() {
        let last = i + 1 == ex.chunks.len() && ex.end == End::Body;
        host.set_body(Body::Response, c.as_bytes());
        s.on_response_body(host, c.len(), last);
    }
    if ex.end == End::Trailers {
        s.on_response_trailers(host);
    }
    s.on_log(host);
}

fn records(host: &FakeHost, r: &mut Root) -> Vec<Value> {
    host.advance(5_000);
    r.on_tick(host);
    host.calls
        .borrow()
        .iter()
        .flat_map(|c| {
            String::from_utf8(c.body.clone())
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn kinds(recs: &[Value]) -> Vec<&str> {
    recs.iter().map(|r| r["kind"].as_str().unwrap()).collect()
}

const CFG: &str = r#"{"audit":{"cluster":"c"},"mcp":{"paths":["/mcp"]}}"#;
const CFG_NOTIFY: &str =
    r#"{"audit":{"cluster":"c"},"mcp":{"paths":["/mcp"],"record_notifications":true}}"#;
const CALL: &str = r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"slow","arguments":{"n":2}}}"#;
const PROGRESS_1: &str = "id: e1\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progressToken\":1,\"progress\":1}}\n\n";
const SAMPLING: &str = "id: e2\ndata: {\"jsonrpc\":\"2.0\",\"id\":\"s-1\",\"method\":\"sampling/createMessage\",\"params\":{\"messages\":[]}}\n\n";
const RESULT: &str = "id: e3\ndata: {\"jsonrpc\":\"2.0\",\"id\":5,\"result\":{\"content\":[]}}\n\n";

#[test]
fn server_messages_are_counted_and_recorded_when_configured() {
    for (cfg, recorded) in [(CFG, false), (CFG_NOTIFY, true)] {
        let host = FakeHost::default();
        let mut r = Root::default();
        assert!(r.configure(&host, cfg.as_bytes()));
        run(
            &host,
            &r,
            &Ex {
                body: CALL,
                chunks: &[PROGRESS_1, SAMPLING, RESULT],
                ..Ex::default()
            },
        );
        let recs = records(&host, &mut r);
        let cmd = recs.iter().find(|r| r["kind"] == "command").unwrap();
        assert_eq!(cmd["outcome"]["status"], "ok");
        assert_eq!(cmd["outcome"]["notifications"], 1);
        assert_eq!(cmd["outcome"]["server_requests"], 1);
        if !recorded {
            assert_eq!(kinds(&recs), ["command"]);
            continue;
        }
        // Recorded as they arrive, so before the command that closes at the end.
        assert_eq!(kinds(&recs), ["notification", "notification", "command"]);
        assert_eq!(recs[0]["mcp"]["method"], "notifications/progress");
        assert_eq!(recs[0]["mcp"]["direction"], "server_to_client");
        assert_eq!(recs[0]["mcp"]["event_id"], "e1");
        assert_eq!(recs[1]["mcp"]["method"], "sampling/createMessage");
        assert_eq!(recs[1]["mcp"]["id"], "s-1");
        assert_eq!(recs[1]["session"], "S1");
        assert!(
            !recs[1].to_string().contains("messages"),
            "params are not shipped"
        );
    }
}

#[test]
fn a_cut_stream_resumed_with_last_event_id_is_recorded_once() {
    let host = FakeHost::default();
    let mut r = Root::default();
    assert!(r.configure(&host, CFG_NOTIFY.as_bytes()));
    // The answer is cut after the first progress event.
    run(
        &host,
        &r,
        &Ex {
            body: CALL,
            chunks: &[PROGRESS_1],
            end: End::Cut,
            ..Ex::default()
        },
    );
    host.advance(40);
    // The client resumes: the server redelivers e1, then the rest.
    run(
        &host,
        &r,
        &Ex {
            method: "GET",
            headers: &[("mcp-session-id", "S1"), ("last-event-id", "e0")],
            chunks: &[PROGRESS_1, SAMPLING, RESULT],
            ..Ex::default()
        },
    );
    let recs = records(&host, &mut r);
    assert_eq!(
        kinds(&recs),
        ["notification", "command", "notification", "command"],
        "{recs:#?}"
    );
    assert_eq!(recs[1]["outcome"]["status"], "aborted", "the cut stream");
    let resumed = &recs[3];
    assert_eq!(resumed["mcp"]["tool"], "slow", "the owed request, by id");
    assert_eq!(resumed["mcp"]["event_id"], "e3");
    assert_eq!(resumed["mcp"]["last_event_id"], "e0");
    assert_eq!(resumed["outcome"]["status"], "ok");
    assert_eq!(resumed["outcome"]["duration_ms"], 40);
    assert!(resumed["reason"].as_str().unwrap().contains("resumed"));
    // A second resumption from the same point records nothing new.
    run(
        &host,
        &r,
        &Ex {
            method: "GET",
            headers: &[("mcp-session-id", "S1"), ("last-event-id", "e0")],
            chunks: &[PROGRESS_1, SAMPLING, RESULT],
            ..Ex::default()
        },
    );
    assert_eq!(records(&host, &mut r).len(), 4);
}

#[test]
fn a_reply_seen_before_the_cut_is_not_recorded_again() {
    let host = FakeHost::default();
    let mut r = Root::default();
    assert!(r.configure(&host, CFG.as_bytes()));
    // The filter saw the result, the client may not have.
    run(
        &host,
        &r,
        &Ex {
            body: CALL,
            chunks: &[PROGRESS_1, RESULT],
            end: End::Cut,
            ..Ex::default()
        },
    );
    run(
        &host,
        &r,
        &Ex {
            method: "GET",
            headers: &[("mcp-session-id", "S1"), ("last-event-id", "e1")],
            chunks: &[RESULT],
            ..Ex::default()
        },
    );
    let recs = records(&host, &mut r);
    assert_eq!(kinds(&recs), ["command"]);
    assert_eq!(
        recs[0]["outcome"]["status"], "ok",
        "the server answered, even if the client missed it"
    );
}

#[test]
fn undecodable_answers_give_decode_error_records() {
    let cases: [(&str, &[&str], End, &str); 4] = [
        (
            "text/event-stream",
            &["data: {oops\n\n"],
            End::Body,
            "not JSON",
        ),
        (
            "text/event-stream",
            &["id: 1\ndata: {\"jsonrpc\":\"2.0\",\"id\":5,"],
            End::Body,
            "truncated",
        ),
        (
            "text/html",
            &["<html>proxy error</html>"],
            End::Body,
            "text/html",
        ),
        (
            "application/json",
            &["{\"jsonrpc\":"],
            End::Body,
            "not valid JSON",
        ),
    ];
    for (ct, chunks, end, why) in cases {
        let host = FakeHost::default();
        let mut r = Root::default();
        assert!(r.configure(&host, CFG.as_bytes()));
        run(
            &host,
            &r,
            &Ex {
                body: CALL,
                content_type: ct,
                chunks,
                end,
                ..Ex::default()
            },
        );
        let recs = records(&host, &mut r);
        assert_eq!(kinds(&recs), ["command", "decode.error"], "{ct}");
        assert!(
            recs[1]["reason"].as_str().unwrap().contains(why),
            "{ct}: {}",
            recs[1]["reason"]
        );
        // Not MCP at all is the upstream's failure; an answer that could not be decoded
        // keeps its HTTP outcome, and the decode.error says why.
        let want = if ct == "text/html" {
            "upstream_error"
        } else {
            "ok"
        };
        assert_eq!(recs[0]["outcome"]["status"], want, "{ct}");
    }
}

#[test]
fn answers_that_end_in_trailers_are_complete() {
    let host = FakeHost::default();
    let mut r = Root::default();
    assert!(r.configure(&host, CFG.as_bytes()));
    run(
        &host,
        &r,
        &Ex {
            body: CALL,
            content_type: "application/json",
            chunks: &[r#"{"jsonrpc":"2.0","id":5,"result":{"content":[],"isError":true}}"#],
            end: End::Trailers,
            ..Ex::default()
        },
    );
    run(
        &host,
        &r,
        &Ex {
            body: CALL,
            chunks: &[PROGRESS_1, RESULT],
            end: End::Trailers,
            ..Ex::default()
        },
    );
    let recs = records(&host, &mut r);
    assert_eq!(kinds(&recs), ["command", "command"]);
    assert_eq!(recs[0]["outcome"]["status"], "error");
    assert_eq!(recs[0]["outcome"]["is_error"], true);
    assert_eq!(recs[1]["outcome"]["status"], "ok");
}

#[test]
fn decode_off_keeps_authentication_only() {
    let host = FakeHost::default();
    let mut r = Root::default();
    let cfg = r#"{"audit":{"cluster":"c"},"mcp":{"decode":false}}"#;
    assert!(r.configure(&host, cfg.as_bytes()));
    run(
        &host,
        &r,
        &Ex {
            body: CALL,
            chunks: &[PROGRESS_1, RESULT],
            ..Ex::default()
        },
    );
    assert!(
        records(&host, &mut r).is_empty(),
        "nothing decoded, nothing recorded"
    );
    let bad = r#"{"audit":{"cluster":"c"},"mcp":{"decode":false},"policy":{"rules":[{"tools":["x"],"action":"deny"}]}}"#;
    let mut r2 = Root::default();
    assert!(!r2.configure(&host, bad.as_bytes()));
    assert!(host.logged("mcp.decode"));
}
