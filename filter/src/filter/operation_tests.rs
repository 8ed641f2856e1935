//! The stateless generation's operations: the legs of a multi-round-trip request and a task's
//! calls share one `operation`, on whichever worker (root over the same host) or replica
//! (another host) each lands.

#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

use serde_json::{json, Value};

use super::*;
use crate::host::fake::FakeHost;
use crate::testkit::exchange::Exchange;
use crate::testkit::jwt::*;

fn config() -> String {
    format!(
        r#"{{"audit":{{"cluster":"c"}},"mcp":{{"paths":["/mcp"],"record_notifications":true}},
        "masking":{{"fields":["password"]}},
        "auth":{{"mode":"required","providers":[{{"issuer":"{ISS}","audiences":["{AUD}"],"jwks":{}}}]}}}}"#,
        jwks()
    )
}

fn replica() -> FakeHost {
    let host = FakeHost::default();
    host.now.set(NOW as u64 * 1000);
    host
}

fn root(host: &FakeHost) -> Root {
    let mut r = Root::default();
    assert!(r.configure(host, config().as_bytes()));
    r
}

const META: &str = r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}"#;

fn call(id: u32, extra: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"deploy","arguments":{{"env":"prod"}}{extra},{META}}}}}"#
    )
}

/// One POST by `sub` answered with `reply` (JSON); the records it shipped.
fn leg(host: &FakeHost, root: &mut Root, sub: &str, body: &str, reply: &Value) -> Vec<Value> {
    let token = format!("Bearer {}", sign("ES256", &claims(sub)));
    let reply = reply.to_string();
    host.exchange(
        root,
        &Exchange {
            headers: &[
                ("authorization", &token),
                ("mcp-protocol-version", "2026-07-28"),
            ],
            body,
            chunks: &[reply.as_bytes()],
            ..Exchange::default()
        },
    );
    host.flush(root)
}

fn only_command(records: Vec<Value>) -> Value {
    let mut commands: Vec<Value> = records
        .into_iter()
        .filter(|r| r["kind"] == "command")
        .collect();
    assert_eq!(commands.len(), 1, "{commands:?}");
    commands.remove(0)
}

fn input_required(id: u32, state: Option<&str>) -> Value {
    let mut result = json!({"resultType": "input_required", "inputRequests": {
        "confirm": {"method": "elicitation/create", "params": {"message": "Deploy?", "requestedSchema": {"type": "object"}}},
        "llm": {"method": "sampling/createMessage", "params": {"messages": [], "maxTokens": 5}}}});
    if let Some(s) = state {
        result["requestState"] = json!(s);
    }
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

fn complete(id: u32) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": {"resultType": "complete", "content": []}})
}

const RESPONSES: &str = r#","inputResponses":{"confirm":{"action":"accept","content":{"password":"hunter2"}},"llm":{"role":"assistant","content":{"type":"text","text":"yes"},"model":"m"}}"#;

#[test]
fn the_legs_of_a_multi_round_trip_request_share_an_operation_across_replicas() {
    let (a, b) = (replica(), replica());
    let (mut ra, mut rb) = (root(&a), root(&b));
    let first = only_command(leg(
        &a,
        &mut ra,
        "alice",
        &call(1, ""),
        &input_required(1, Some("opaque-state-1")),
    ));
    assert_eq!(first["outcome"]["status"], "input_required");
    assert_eq!(
        first["mcp"]["input_requests"],
        json!({"confirm": "elicitation/create", "llm": "sampling/createMessage"})
    );
    let op = first["operation"].as_str().unwrap().to_string();
    assert!(op.starts_with("st-"), "{op}");
    assert_ne!(op, first["id"].as_str().unwrap());

    // The retry lands on the other replica: nothing shared, the state links it.
    let retry = format!(r#"{RESPONSES},"requestState":"opaque-state-1""#);
    let second = only_command(leg(&b, &mut rb, "alice", &call(2, &retry), &complete(2)));
    assert_eq!(second["operation"], op.as_str());
    assert_eq!(second["outcome"]["status"], "ok");
    let responses = &second["mcp"]["input_responses"];
    assert_eq!(responses["confirm"]["content"]["password"], "[REDACTED]");
    assert_eq!(responses["llm"]["content"]["text"], "yes");
    assert!(second["masked"]
        .as_array()
        .unwrap()
        .contains(&json!("/params/inputResponses/confirm/content/password")));
    assert!(!second.to_string().contains("hunter2"));
    assert!(
        !second.to_string().contains("opaque-state-1"),
        "the state is not recorded"
    );

    // Another identity echoing the same state is another story.
    let foreign = only_command(leg(&b, &mut rb, "mallory", &call(3, &retry), &complete(3)));
    assert_ne!(foreign["operation"], op.as_str());
}

#[test]
fn a_third_round_is_linked_within_the_process() {
    let (a, b) = (replica(), replica());
    let (mut worker1, mut worker2, mut other) = (root(&a), root(&a), root(&b));
    let first = only_command(leg(
        &a,
        &mut worker1,
        "alice",
        &call(1, ""),
        &input_required(1, Some("s1")),
    ));
    let op = first["operation"].clone();
    let retry = format!(r#"{RESPONSES},"requestState":"s1""#);
    let second = only_command(leg(
        &a,
        &mut worker2,
        "alice",
        &call(2, &retry),
        &input_required(2, Some("s2")),
    ));
    assert_eq!(second["operation"], op);
    assert_eq!(second["outcome"]["status"], "input_required");
    let third_body = call(3, &format!(r#"{RESPONSES},"requestState":"s2""#));
    let third = only_command(leg(&a, &mut worker1, "alice", &third_body, &complete(3)));
    assert_eq!(
        third["operation"], op,
        "linked through the process's shared data"
    );
    // On another replica the newer state names an operation of its own, the one the second
    // leg named as its next: the trail's reader joins them.
    let elsewhere = only_command(leg(&b, &mut other, "alice", &third_body, &complete(3)));
    assert_ne!(elsewhere["operation"], op);
    assert_eq!(elsewhere["operation"], second["mcp"]["next_operation"]);
    assert_eq!(
        first["mcp"]["next_operation"],
        Value::Null,
        "the retry derives it itself"
    );
}

#[test]
fn a_retry_without_request_state_is_linked_by_call_and_answered_keys() {
    let host = replica();
    let (mut w1, mut w2) = (root(&host), root(&host));
    let first = only_command(leg(
        &host,
        &mut w1,
        "alice",
        &call(1, ""),
        &input_required(1, None),
    ));
    assert_eq!(
        first["operation"], first["id"],
        "the first leg names itself"
    );
    let second = only_command(leg(
        &host,
        &mut w2,
        "alice",
        &call(2, RESPONSES),
        &complete(2),
    ));
    assert_eq!(second["operation"], first["operation"]);
    // Other arguments: not a retry of that call.
    let other = call(3, RESPONSES).replace("prod", "staging");
    let third = only_command(leg(&host, &mut w2, "alice", &other, &complete(3)));
    assert_ne!(third["operation"], first["operation"]);
    assert!(third["operation"].as_str().unwrap().starts_with("in-"));
    // On another replica the retry derives the id the first leg named as its next.
    let (b, first_b) = (replica(), first["mcp"]["next_operation"].clone());
    assert!(first_b.as_str().unwrap().starts_with("in-"));
    let retry = call(4, RESPONSES);
    let elsewhere = only_command(leg(&b, &mut root(&b), "alice", &retry, &complete(4)));
    assert_eq!(elsewhere["operation"], first_b);
}

#[test]
fn a_task_and_its_calls_share_an_operation_and_its_end_is_recorded() {
    let (a, b) = (replica(), replica());
    let (mut ra, mut rb) = (root(&a), root(&b));
    let created = json!({"jsonrpc": "2.0", "id": 1, "result": {"resultType": "task",
        "taskId": "task-42", "status": "working", "ttlMs": 60000, "pollIntervalMs": 100}});
    let first = only_command(leg(&a, &mut ra, "alice", &call(1, ""), &created));
    assert_eq!(first["outcome"]["status"], "task");
    assert_eq!(first["mcp"]["task_id"], "task-42");
    assert_eq!(first["mcp"]["task_status"], "working");
    let op = first["operation"].clone();
    assert!(op.as_str().unwrap().starts_with("task-"));
    let get = format!(
        r#"{{"jsonrpc":"2.0","id":2,"method":"tasks/get","params":{{"taskId":"task-42",{META}}}}}"#
    );
    let done = json!({"jsonrpc": "2.0", "id": 2, "result": {"resultType": "complete",
        "taskId": "task-42", "status": "completed", "result": {"content": []}}});
    let polled = only_command(leg(&b, &mut rb, "alice", &get, &done));
    assert_eq!(polled["operation"], op);
    assert_eq!(polled["mcp"]["task_id"], "task-42");
    assert_eq!(polled["mcp"]["task_status"], "completed");
    assert_eq!(polled["outcome"]["status"], "ok");
    let cancel = get
        .replace("tasks/get", "tasks/cancel")
        .replace("\"id\":2", "\"id\":3");
    let gone = json!({"jsonrpc": "2.0", "id": 3, "error": {"code": -32602, "message": "task is terminal"}});
    let cancelled = only_command(leg(&b, &mut rb, "alice", &cancel, &gone));
    assert_eq!(cancelled["operation"], op);
    assert_eq!(cancelled["outcome"]["status"], "error");
}

#[test]
fn a_task_created_by_a_later_leg_stays_in_that_operation() {
    let host = replica();
    let mut r = root(&host);
    let first = only_command(leg(
        &host,
        &mut r,
        "alice",
        &call(1, ""),
        &input_required(1, Some("s1")),
    ));
    let retry = format!(r#"{RESPONSES},"requestState":"s1""#);
    let created = json!({"jsonrpc": "2.0", "id": 2, "result": {"resultType": "task", "taskId": "t-7", "status": "working"}});
    let second = only_command(leg(&host, &mut r, "alice", &call(2, &retry), &created));
    assert_eq!(second["operation"], first["operation"]);
    let get = format!(
        r#"{{"jsonrpc":"2.0","id":3,"method":"tasks/get","params":{{"taskId":"t-7",{META}}}}}"#
    );
    let done = json!({"jsonrpc": "2.0", "id": 3, "result": {"taskId": "t-7", "status": "failed"}});
    let polled = only_command(leg(&host, &mut r, "alice", &get, &done));
    assert_eq!(polled["operation"], first["operation"]);
    assert_eq!(polled["mcp"]["task_status"], "failed");
}

#[test]
fn a_2025_11_25_task_is_recorded_too() {
    let host = replica();
    let mut r = root(&host);
    let created = json!({"jsonrpc": "2.0", "id": 1, "result": {"task": {"taskId": "v1-task", "status": "working", "ttl": 1000}}});
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"deploy","arguments":{},"task":{"ttl":1000}}}"#;
    let rec = only_command(leg(&host, &mut r, "alice", body, &created));
    assert_eq!(rec["outcome"]["status"], "task");
    assert_eq!(rec["mcp"]["task_id"], "v1-task");
}

#[test]
fn a_call_by_itself_is_its_own_operation_and_discover_is_a_command() {
    let host = replica();
    let mut r = root(&host);
    let discover =
        format!(r#"{{"jsonrpc":"2.0","id":1,"method":"server/discover","params":{{{META}}}}}"#);
    let answer = json!({"jsonrpc": "2.0", "id": 1, "result": {"resultType": "complete", "supportedVersions": ["2026-07-28"]}});
    let rec = only_command(leg(&host, &mut r, "alice", &discover, &answer));
    assert_eq!(rec["mcp"]["method"], "server/discover");
    assert_eq!(rec["mcp"]["protocol_version"], "2026-07-28");
    assert_eq!(rec["session"], Value::Null);
    assert_eq!(rec["operation"], rec["id"]);
    assert_eq!(rec["outcome"]["status"], "ok");
}

#[test]
fn notifications_on_a_listen_stream_belong_to_its_operation() {
    let host = replica();
    let mut r = root(&host);
    let token = format!("Bearer {}", sign("ES256", &claims("alice")));
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":9,"method":"subscriptions/listen","params":{{"toolsListChanged":true,{META}}}}}"#
    );
    let ev = |n: u32| {
        format!("id: e{n}\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}}\n\n")
    };
    let (e1, e2) = (ev(1), ev(2));
    let end =
        "id: e3\ndata: {\"jsonrpc\":\"2.0\",\"id\":9,\"result\":{\"resultType\":\"complete\"}}\n\n";
    host.exchange(
        &r,
        &Exchange {
            headers: &[("authorization", &token)],
            body: &body,
            response_headers: &[("content-type", "text/event-stream")],
            chunks: &[e1.as_bytes(), e2.as_bytes(), end.as_bytes()],
            ..Exchange::default()
        },
    );
    let records = host.flush(&mut r);
    let listen = records.iter().find(|r| r["kind"] == "command").unwrap();
    assert_eq!(listen["mcp"]["method"], "subscriptions/listen");
    assert_eq!(listen["operation"], listen["id"]);
    let notes: Vec<&Value> = records
        .iter()
        .filter(|r| r["kind"] == "notification")
        .collect();
    assert_eq!(notes.len(), 2);
    for n in notes {
        assert_eq!(n["operation"], listen["id"]);
    }
}
