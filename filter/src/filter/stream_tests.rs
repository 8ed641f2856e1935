//! Streams over time: server messages on SSE answers, `GET` streams resumed with
//! `Last-Event-ID`, undecodable answers, answers that end in trailers.

#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

use serde_json::Value;

use super::*;
use crate::host::fake::FakeHost;
use crate::testkit::exchange::{End, Exchange};

const S1: &[(&str, &str)] = &[("mcp-session-id", "S1")];
const RESUMED: &[(&str, &str)] = &[("mcp-session-id", "S1"), ("last-event-id", "e0")];
const SSE: &[(&str, &str)] = &[("content-type", "text/event-stream")];

/// A POST in session S1 answered with SSE `chunks`.
fn post<'a>(chunks: &'a [&'a [u8]], end: End) -> Exchange<'a> {
    Exchange {
        headers: S1,
        body: CALL,
        response_headers: SSE,
        chunks,
        end,
        ..Exchange::default()
    }
}

/// A GET resuming session S1's stream from event e0.
fn resume<'a>(chunks: &'a [&'a [u8]]) -> Exchange<'a> {
    Exchange {
        method: "GET",
        headers: RESUMED,
        response_headers: SSE,
        chunks,
        ..Exchange::default()
    }
}

fn root(host: &FakeHost, cfg: &str) -> Root {
    let mut r = Root::default();
    assert!(r.configure(host, cfg.as_bytes()));
    r
}

fn kinds(recs: &[Value]) -> Vec<&str> {
    recs.iter().map(|r| r["kind"].as_str().unwrap()).collect()
}

const CFG: &str = r#"{"audit":{"cluster":"c"},"mcp":{"paths":["/mcp"]}}"#;
const CFG_NOTIFY: &str =
    r#"{"audit":{"cluster":"c"},"mcp":{"paths":["/mcp"],"record_notifications":true}}"#;
const CALL: &str = r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"slow","arguments":{"n":2}}}"#;
const PROGRESS_1: &[u8] = b"id: e1\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progressToken\":1,\"progress\":1}}\n\n";
const SAMPLING: &[u8] = b"id: e2\ndata: {\"jsonrpc\":\"2.0\",\"id\":\"s-1\",\"method\":\"sampling/createMessage\",\"params\":{\"messages\":[]}}\n\n";
const RESULT: &[u8] =
    b"id: e3\ndata: {\"jsonrpc\":\"2.0\",\"id\":5,\"result\":{\"content\":[]}}\n\n";

#[test]
fn server_messages_are_counted_and_recorded_when_configured() {
    for (cfg, recorded) in [(CFG, false), (CFG_NOTIFY, true)] {
        let host = FakeHost::default();
        let mut r = root(&host, cfg);
        host.exchange(&r, &post(&[PROGRESS_1, SAMPLING, RESULT], End::Body));
        let recs = host.flush(&mut r);
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
    let mut r = root(&host, CFG_NOTIFY);
    // The answer is cut after the first progress event.
    host.exchange(&r, &post(&[PROGRESS_1], End::Cut));
    host.advance(40);
    // The client resumes: the server redelivers e1, then the rest.
    host.exchange(&r, &resume(&[PROGRESS_1, SAMPLING, RESULT]));
    let recs = host.flush(&mut r);
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
    host.exchange(&r, &resume(&[PROGRESS_1, SAMPLING, RESULT]));
    assert!(host.flush(&mut r).is_empty());
}

/// The stream is cut on one worker and resumed on another of the same Envoy process: the
/// owed reply is recorded once, by the worker that saw it, and redelivered events are not.
#[test]
fn a_stream_resumed_on_another_worker_is_recorded_once() {
    let host = FakeHost::default();
    let mut cut_here = root(&host, CFG_NOTIFY);
    let mut resumed_here = root(&host, CFG_NOTIFY);
    host.exchange(&cut_here, &post(&[PROGRESS_1], End::Cut));
    host.advance(40);
    host.exchange(&resumed_here, &resume(&[PROGRESS_1, SAMPLING, RESULT]));
    let first = host.flush(&mut cut_here);
    assert_eq!(kinds(&first), ["notification", "command"]);
    assert_eq!(first[1]["outcome"]["status"], "aborted");
    let second = host.flush(&mut resumed_here);
    assert_eq!(kinds(&second), ["notification", "command"], "{second:#?}");
    assert_eq!(
        second[0]["mcp"]["event_id"], "e2",
        "e1 was recorded by the first worker"
    );
    assert_eq!(
        second[1]["mcp"]["tool"], "slow",
        "the owed request, from the other worker"
    );
    assert_eq!(second[1]["outcome"]["duration_ms"], 40);
    // A third worker sees the same resumption again: nothing new.
    let mut third = root(&host, CFG_NOTIFY);
    host.exchange(&third, &resume(&[PROGRESS_1, SAMPLING, RESULT]));
    assert!(host.flush(&mut third).is_empty());
}

#[test]
fn a_reply_seen_before_the_cut_is_not_recorded_again() {
    let host = FakeHost::default();
    let mut r = root(&host, CFG);
    // The filter saw the result, the client may not have.
    host.exchange(&r, &post(&[PROGRESS_1, RESULT], End::Cut));
    host.exchange(&r, &resume(&[RESULT]));
    let recs = host.flush(&mut r);
    assert_eq!(kinds(&recs), ["command"]);
    assert_eq!(
        recs[0]["outcome"]["status"], "ok",
        "the server answered, even if the client missed it"
    );
}

#[test]
fn undecodable_answers_give_decode_error_records() {
    let cases: [(&str, &[&[u8]], End, &str); 4] = [
        (
            "text/event-stream",
            &[b"data: {oops\n\n"],
            End::Body,
            "not JSON",
        ),
        (
            "text/event-stream",
            &[b"id: 1\ndata: {\"jsonrpc\":\"2.0\",\"id\":5,"],
            End::Body,
            "truncated",
        ),
        (
            "text/html",
            &[b"<html>proxy error</html>"],
            End::Body,
            "text/html",
        ),
        (
            "application/json",
            &[b"{\"jsonrpc\":"],
            End::Body,
            "not valid JSON",
        ),
    ];
    for (ct, chunks, end, why) in cases {
        let host = FakeHost::default();
        let mut r = root(&host, CFG);
        let answer = Exchange {
            response_headers: &[("content-type", ct)],
            ..post(chunks, end)
        };
        host.exchange(&r, &answer);
        let recs = host.flush(&mut r);
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
    let mut r = root(&host, CFG);
    let json = Exchange {
        response_headers: &[("content-type", "application/json")],
        ..post(
            &[br#"{"jsonrpc":"2.0","id":5,"result":{"content":[],"isError":true}}"#],
            End::Trailers,
        )
    };
    host.exchange(&r, &json);
    host.exchange(&r, &post(&[PROGRESS_1, RESULT], End::Trailers));
    let recs = host.flush(&mut r);
    assert_eq!(kinds(&recs), ["command", "command"]);
    assert_eq!(recs[0]["outcome"]["status"], "error");
    assert_eq!(recs[0]["outcome"]["is_error"], true);
    assert_eq!(recs[1]["outcome"]["status"], "ok");
}

#[test]
fn decode_off_keeps_authentication_only() {
    use crate::testkit::jwt::{claims, jwks, sign, AUD, ISS, NOW};
    let host = FakeHost::default();
    host.now.set(NOW as u64 * 1000);
    let cfg = format!(
        r#"{{"audit":{{"cluster":"c"}},"mcp":{{"decode":false}},
        "auth":{{"mode":"required","providers":[{{"issuer":"{ISS}","audiences":["{AUD}"],"jwks":{}}}]}}}}"#,
        jwks()
    );
    let mut r = root(&host, &cfg);
    let token = format!("Bearer {}", sign("ES256", &claims("alice")));
    let admitted = Exchange {
        headers: &[("authorization", token.as_str())],
        ..post(&[PROGRESS_1, RESULT], End::Body)
    };
    assert!(!host.exchange(&r, &admitted).answered_locally);
    assert!(
        host.flush(&mut r).is_empty(),
        "nothing decoded, nothing recorded"
    );
    // Refusals are still recorded.
    assert!(host.exchange(&r, &post(&[], End::Body)).answered_locally);
    assert_eq!(kinds(&host.flush(&mut r)), ["auth.denied"]);
    let bad = r#"{"audit":{"cluster":"c"},"mcp":{"decode":false},"policy":{"rules":[{"tools":["x"],"action":"deny"}]}}"#;
    let mut r2 = Root::default();
    assert!(!r2.configure(&host, bad.as_bytes()));
    assert!(host.logged("mcp.decode"));
}

/// A `subscriptions/listen` answered as newline-delimited JSON under `application/json`
/// (the conformance suite's reference server) is a stream: with answer masking on, each line
/// still reaches the client as it comes, masked, never held for an end that does not come.
#[test]
fn a_listen_stream_in_json_lines_passes_as_it_comes_even_when_answers_are_masked() {
    let host = FakeHost::default();
    let cfg = r#"{"audit":{"cluster":"c"},"mcp":{"record_notifications":true},"masking":{"detectors":["email"],"responses":true}}"#;
    let mut r = Root::default();
    assert!(r.configure(&host, cfg.as_bytes()));
    let body = r#"{"jsonrpc":"2.0","id":7,"method":"subscriptions/listen","params":{"notifications":{"toolsListChanged":true},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;
    let ack = b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/subscriptions/acknowledged\",\"params\":{}}\n";
    let change = b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/resources/updated\",\"params\":{\"uri\":\"mailto:alice@example.com\"}}\n{\"jsonrpc\"";
    let done = host.exchange(
        &r,
        &Exchange {
            body,
            chunks: &[ack, change],
            end: End::Cut,
            ..Exchange::default()
        },
    );
    let saw = String::from_utf8(done.client_saw).unwrap();
    assert_eq!(saw.lines().count(), 2, "both complete lines passed: {saw}");
    assert!(saw.contains("acknowledged"));
    assert!(
        !saw.contains("alice@example.com"),
        "masked as it passed: {saw}"
    );
    let recs = host.flush(&mut r);
    let notes = recs.iter().filter(|r| r["kind"] == "notification").count();
    assert_eq!(notes, 2, "{recs:#?}");
    assert!(
        recs.iter().all(|r| r["kind"] != "decode.error"),
        "{recs:#?}"
    );
}
