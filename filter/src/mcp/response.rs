//! What a stream learns from its response: JSON-RPC replies by id, notifications and
//! server requests, for `application/json` (bounded copy) and `text/event-stream`
//! (incremental, never buffered whole). Optionally rewrites replies as they pass.

use std::collections::HashMap;

use serde_json::Value;

use crate::mcp::jsonrpc;
use crate::mcp::sse;

/// Response body kinds the decoder knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    Json,
    /// `application/json` answering `subscriptions/listen`, sent as newline-delimited JSON
    /// messages that go on for as long as the subscription (the conformance suite's reference
    /// server does this): decoded line by line as it passes, never held whole.
    JsonLines,
    Sse,
    Other,
}

/// A reply to one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// The JSON-RPC error object, if the reply is an error.
    pub error: Option<Value>,
    /// A tool result with `isError: true`.
    pub is_error: bool,
    /// `result.protocolVersion` (replies to `initialize`).
    pub protocol_version: Option<String>,
    /// The SSE event that carried it.
    pub event_id: Option<String>,
    /// The `result`, kept when records carry a preview of it.
    pub result: Option<Value>,
    /// `result.resultType` (2026-07-28: `complete`, `input_required`, `task`).
    pub result_type: Option<String>,
    /// `inputRequests` reduced to each key and its request's method.
    pub input_requests: Option<Value>,
    /// SHA-256 (hex) of the `requestState` the server handed out: the state itself is
    /// opaque and may be large, the digest is what links the retry.
    pub state_digest: Option<String>,
    /// The task the answer names (`taskId`, or a 2025-11-25 `task.taskId`).
    pub task_id: Option<String>,
    /// The task's status in the same answer.
    pub task_status: Option<String>,
    /// The answer made the call a task (`resultType: task`, or a 2025-11-25 `CreateTaskResult`).
    pub created_task: bool,
}

impl Reply {
    /// What a reply message says about its request.
    pub fn of(m: &jsonrpc::Message, event_id: Option<&str>) -> Self {
        let result = m.result.as_ref();
        // 2026-07-28 tasks put `taskId` and `status` at the top of the result; 2025-11-25
        // nests them in `task`.
        let nested = result
            .and_then(|r| r.get("task"))
            .filter(|t| t.get("taskId").is_some());
        let task = result.filter(|r| r.get("taskId").is_some()).or(nested);
        let task_id = text(task, "taskId");
        let task_status = task_id.as_ref().and_then(|_| text(task, "status"));
        Reply {
            error: m.error.clone(),
            is_error: result
                .and_then(|r| r.get("isError"))
                .and_then(Value::as_bool)
                .unwrap_or(false),
            protocol_version: result
                .and_then(|r| r.get("protocolVersion"))
                .and_then(Value::as_str)
                .map(str::to_string),
            event_id: event_id.map(str::to_string),
            result: None,
            result_type: text(result, "resultType"),
            input_requests: result
                .and_then(|r| r.get("inputRequests"))
                .and_then(Value::as_object)
                .map(|reqs| {
                    let kinds = reqs.iter().map(|(k, v)| {
                        let method = v.get("method").and_then(Value::as_str);
                        (k.clone(), Value::from(method.unwrap_or("unknown")))
                    });
                    Value::Object(kinds.collect())
                }),
            state_digest: result
                .and_then(|r| r.get("requestState"))
                .and_then(Value::as_str)
                .map(state_digest),
            task_id,
            task_status,
            created_task: nested.is_some()
                || result.and_then(|r| r.get("resultType")) == Some(&Value::from("task")),
        }
    }
}

fn text(v: Option<&Value>, key: &str) -> Option<String> {
    v?.get(key)?.as_str().map(str::to_string)
}

/// The digest a `requestState` is known by (hex SHA-256).
pub fn state_digest(state: &str) -> String {
    use sha2::{Digest, Sha256};
    crate::audit::chain::hex(&Sha256::digest(state.as_bytes()))
}

/// A message worth its own record, as it arrived: a server notification or request, or
/// (on a `GET` stream) a reply to a request made on an earlier stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivered {
    pub event_id: Option<String>,
    pub message: jsonrpc::Message,
}

/// A rewrite applied to each reply message before it reaches the client; returns whether
/// it changed anything.
pub type Rewrite<'a> = &'a dyn Fn(&mut Value) -> bool;

/// Response decoding state.
#[derive(Debug)]
pub struct Responses {
    pub kind: BodyKind,
    json: Option<Vec<u8>>,
    sse: Option<sse::Parser>,
    max: usize,
    pub replies: HashMap<String, Reply>,
    pub notifications: u64,
    pub server_requests: u64,
    /// Why (part of) the response could not be decoded.
    pub problem: Option<String>,
    /// The response's `content-type`, for the record when it is not one MCP uses.
    pub content_type: String,
    /// Collect server notifications and requests into `delivered`.
    pub collect_server: bool,
    /// Collect replies into `delivered` instead of `replies` (a `GET` stream has no
    /// requests of its own: its replies belong to earlier streams).
    pub collect_replies: bool,
    /// Drained by the stream after each callback.
    pub delivered: Vec<Delivered>,
    /// Keep each reply's `result` (`mcp.result_preview_bytes`).
    pub keep_results: bool,
    /// The incomplete last line of a `JsonLines` body, carried to the next chunk.
    tail: Vec<u8>,
}

/// The key a JSON-RPC id is matched by.
pub fn id_key(id: &Value) -> String {
    id.to_string()
}

impl Responses {
    pub fn new(content_type: &str, max: usize) -> Self {
        let ct = content_type.to_ascii_lowercase();
        let kind = if ct.starts_with("text/event-stream") {
            BodyKind::Sse
        } else if ct.starts_with("application/json") {
            BodyKind::Json
        } else {
            BodyKind::Other
        };
        Self {
            kind,
            json: (kind == BodyKind::Json).then(Vec::new),
            sse: (kind == BodyKind::Sse).then(|| sse::Parser::new(max)),
            max,
            replies: HashMap::new(),
            notifications: 0,
            server_requests: 0,
            problem: None,
            content_type: content_type.to_string(),
            collect_server: false,
            collect_replies: false,
            delivered: Vec::new(),
            keep_results: false,
            tail: Vec::new(),
        }
    }

    /// A JSON answer that is a stream of newline-delimited messages (see
    /// [`BodyKind::JsonLines`]).
    pub fn as_lines(&mut self) {
        if self.kind == BodyKind::Json {
            self.kind = BodyKind::JsonLines;
            self.json = None;
        }
    }

    /// Feeds a `JsonLines` chunk: each complete line is decoded (and rewritten) as it comes.
    /// With a rewrite, returns what replaces the chunk: the complete lines, rewritten (the
    /// incomplete tail is carried over, and given out at the end).
    pub fn lines_chunk(
        &mut self,
        data: &[u8],
        end: bool,
        rewrite: Option<Rewrite<'_>>,
    ) -> Option<Vec<u8>> {
        self.tail.extend_from_slice(data);
        let cut = if end {
            self.tail.len()
        } else {
            self.tail
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1)
        };
        let complete: Vec<u8> = self.tail.drain(..cut).collect();
        if self.tail.len() > self.max {
            self.problem = Some(format!(
                "a JSON line exceeded mcp.max_body_bytes ({} bytes); not decoded",
                self.max
            ));
            let mut passed = complete;
            passed.append(&mut self.tail);
            return rewrite.map(|_| passed);
        }
        let mut out = rewrite.map(|_| Vec::with_capacity(complete.len()));
        for line in complete.split_inclusive(|&b| b == b'\n') {
            let text = String::from_utf8_lossy(line);
            let body = text.trim_end_matches(['\n', '\r']);
            let ending = text.get(body.len()..).unwrap_or_default();
            let mut written = None;
            if !body.trim().is_empty() {
                written = self.decode(body, None, rewrite, "a JSON line is not JSON");
            }
            if let Some(out) = out.as_mut() {
                out.extend_from_slice(written.as_deref().unwrap_or(body).as_bytes());
                out.extend_from_slice(ending.as_bytes());
            }
        }
        out
    }

    /// Copies a JSON body chunk (up to the bound).
    pub fn json_chunk(&mut self, data: &[u8]) {
        if let Some(buf) = self.json.as_mut() {
            if buf.len().saturating_add(data.len()) > self.max {
                self.json = None;
                self.problem = Some(format!(
                    "JSON response larger than mcp.max_body_bytes ({} bytes); not decoded",
                    self.max
                ));
            } else {
                buf.extend_from_slice(data);
            }
        }
    }

    /// The JSON body is complete: decode it (the copy, or `whole` when the body was held).
    /// With a rewrite, returns the new body when anything changed.
    pub fn json_end(
        &mut self,
        whole: Option<&[u8]>,
        rewrite: Option<Rewrite<'_>>,
    ) -> Option<Vec<u8>> {
        let copy = self.json.take();
        let body = whole.or(copy.as_deref())?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return None;
        }
        const WHAT: &str = "JSON response is not valid JSON";
        match std::str::from_utf8(body) {
            Ok(text) => self
                .decode(text, None, rewrite, WHAT)
                .map(String::into_bytes),
            Err(e) => {
                self.problem = Some(format!("{WHAT}: {e}"));
                None
            }
        }
    }

    /// Decodes one JSON text (a body, an event's data) and learns from it. What is only read
    /// is classified without building its tree; with a rewrite (or when results are kept)
    /// it is parsed whole, and the rewritten text is returned when anything changed.
    fn decode(
        &mut self,
        text: &str,
        event_id: Option<&str>,
        rewrite: Option<Rewrite<'_>>,
        what: &str,
    ) -> Option<String> {
        if rewrite.is_none() && !self.keep_results {
            // Each message is absorbed as it is read (no vector per event).
            match jsonrpc::peek_each_classified(text, |m| self.absorb_one(m, event_id)) {
                Ok(()) => {}
                Err(jsonrpc::DecodeError::Json(e)) => self.problem = Some(format!("{what}: {e}")),
                Err(e) => self.problem = Some(format!("response: {e}")),
            }
            return None;
        }
        let mut value: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                self.problem = Some(format!("{what}: {e}"));
                return None;
            }
        };
        let changed = rewrite.is_some_and(|f| rewrite_all(&mut value, f));
        let new_text = changed.then(|| value.to_string());
        self.absorb(value, event_id);
        new_text
    }

    /// Feeds an SSE chunk. With a rewrite, returns what should replace the chunk: the
    /// complete events seen so far, re-serialised (the incomplete tail is carried over).
    pub fn sse_chunk(&mut self, data: &[u8], rewrite: Option<Rewrite<'_>>) -> Option<Vec<u8>> {
        // Out of `self` while it feeds: each event is decoded as it completes, borrowed from
        // the parser (no event copied out, no vector of events).
        let mut parser = self.sse.take()?;
        let mut out = rewrite.map(|_| Vec::with_capacity(data.len()));
        parser.feed_with(data, |ev| {
            let mut new_data = None;
            if ev.oversized {
                self.problem = Some(format!(
                    "an SSE event exceeded mcp.max_body_bytes ({} bytes); not decoded",
                    self.max
                ));
            } else if !ev.data.trim().is_empty() {
                let what = "SSE event data is not JSON";
                new_data = self.decode(ev.data, ev.id, rewrite, what);
            }
            if let Some(out) = out.as_mut() {
                let data = new_data.as_deref().unwrap_or(ev.data);
                serialize_event(&sse::EventRef { data, ..ev }, out);
            }
        });
        self.sse = Some(parser);
        out
    }

    /// The response ended: an SSE stream that stops inside an event was cut short.
    pub fn finish(&mut self) {
        if self.kind == BodyKind::JsonLines && !self.tail.is_empty() {
            // The last line had no newline: decode what is there.
            self.lines_chunk(&[], true, None);
        }
        if self.sse.as_ref().is_some_and(|p| p.buffered() > 0) && self.problem.is_none() {
            self.problem = Some("SSE stream ended inside an event (truncated)".into());
        }
    }

    fn absorb(&mut self, value: Value, event_id: Option<&str>) {
        let items = match value {
            Value::Array(a) => a,
            v => vec![v],
        };
        for item in items {
            self.absorb_one(
                jsonrpc::decode_message(item).map(jsonrpc::Peeked::from),
                event_id,
            );
        }
    }

    /// Learns from one message; one that is only counted (a server notification or request
    /// nobody collects) is not built.
    fn absorb_one(
        &mut self,
        item: Result<jsonrpc::Peeked<'_>, jsonrpc::DecodeError>,
        event_id: Option<&str>,
    ) {
        let item = match item {
            Ok(p) => match p.kind() {
                kind @ (jsonrpc::Kind::Notification | jsonrpc::Kind::Request)
                    if !self.collect_server =>
                {
                    self.count_server_message(kind);
                    return;
                }
                _ => p.into_message(),
            },
            Err(e) => Err(e),
        };
        match item {
            Ok(m) => match m.kind {
                jsonrpc::Kind::Response if self.collect_replies => {
                    self.delivered.push(Delivered {
                        event_id: event_id.map(str::to_string),
                        message: m,
                    });
                }
                jsonrpc::Kind::Response => {
                    let Some(id) = m.id.as_ref() else { return };
                    let key = id_key(id);
                    let mut reply = Reply::of(&m, event_id);
                    if self.keep_results {
                        reply.result = m.result;
                    }
                    self.replies.insert(key, reply);
                }
                jsonrpc::Kind::Notification | jsonrpc::Kind::Request => {
                    self.count_server_message(m.kind);
                    if self.collect_server {
                        self.delivered.push(Delivered {
                            event_id: event_id.map(str::to_string),
                            message: m,
                        });
                    }
                }
            },
            Err(e) => self.problem = Some(format!("response: {e}")),
        }
    }

    fn count_server_message(&mut self, kind: jsonrpc::Kind) {
        if kind == jsonrpc::Kind::Notification {
            self.notifications += 1;
        } else {
            self.server_requests += 1;
        }
    }
}

fn rewrite_all(v: &mut Value, f: Rewrite<'_>) -> bool {
    match v {
        Value::Array(items) => items.iter_mut().fold(false, |acc, i| f(i) | acc),
        other => f(other),
    }
}

fn serialize_event(ev: &sse::EventRef<'_>, out: &mut Vec<u8>) {
    if let Some(id) = ev.id {
        out.extend_from_slice(b"id: ");
        out.extend_from_slice(id.as_bytes());
        out.push(b'\n');
    }
    if ev.event != "message" {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(ev.event.as_bytes());
        out.push(b'\n');
    }
    if let Some(r) = ev.retry {
        out.extend_from_slice(format!("retry: {r}\n").as_bytes());
    }
    for line in ev.data.split('\n') {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use serde_json::json;

    use super::*;

    #[test]
    fn json_replies_errors_and_tool_errors() {
        let mut r = Responses::new("application/json; charset=utf-8", 1 << 20);
        let body = br#"[{"jsonrpc":"2.0","id":1,"result":{"content":[],"isError":true}},
                        {"jsonrpc":"2.0","id":"b","error":{"code":-32602,"message":"bad"}},
                        {"jsonrpc":"2.0","id":3,"result":{"protocolVersion":"2025-06-18"}}]"#;
        r.json_chunk(&body[..10]);
        r.json_chunk(&body[10..]);
        assert!(r.json_end(None, None).is_none());
        assert!(r.replies[&id_key(&json!(1))].is_error);
        assert_eq!(
            r.replies[&id_key(&json!("b"))].error.as_ref().unwrap()["code"],
            -32602
        );
        assert_eq!(
            r.replies[&id_key(&json!(3))].protocol_version.as_deref(),
            Some("2025-06-18")
        );
        let mut bad = Responses::new("application/json", 1 << 20);
        bad.json_chunk(b"{oops");
        bad.json_end(None, None);
        assert!(bad.problem.unwrap().contains("not valid JSON"));
    }

    #[test]
    fn sse_progress_then_result_split_anywhere() {
        let stream = "id: 1\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progress\":1}}\n\n\
                      : ping\n\nid: 2\ndata: {\"jsonrpc\":\"2.0\",\"id\":5,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"ok ✓\"}]}}\n\n";
        for cut in 0..stream.len() {
            let mut r = Responses::new("text/event-stream", 1 << 20);
            let (a, b) = stream.as_bytes().split_at(cut);
            r.sse_chunk(a, None);
            r.sse_chunk(b, None);
            assert_eq!(r.notifications, 1);
            assert!(r.replies.contains_key(&id_key(&json!(5))), "cut {cut}");
            assert!(!r.replies[&id_key(&json!(5))].is_error);
        }
    }

    #[test]
    fn json_lines_are_decoded_and_rewritten_line_by_line_split_anywhere() {
        let stream = "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/subscriptions/acknowledged\",\"params\":{}}\n\
                      {\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}\n\
                      {\"jsonrpc\":\"2.0\",\"id\":4,\"result\":{\"secret\":\"s\"}}";
        let hide: &dyn Fn(&mut Value) -> bool = &|v| {
            let Some(r) = v.pointer_mut("/result/secret") else {
                return false;
            };
            *r = json!("x");
            true
        };
        for cut in 0..stream.len() {
            let mut r = Responses::new("application/json", 1 << 20);
            r.collect_server = true;
            r.as_lines();
            let (a, b) = stream.as_bytes().split_at(cut);
            let mut seen = r.lines_chunk(a, false, Some(hide)).unwrap();
            seen.extend(r.lines_chunk(b, true, Some(hide)).unwrap());
            let seen = String::from_utf8(seen).unwrap();
            assert_eq!(seen.lines().count(), 3, "cut {cut}: {seen}");
            assert!(
                seen.contains("\"secret\":\"x\"") && !seen.contains("\"s\""),
                "{seen}"
            );
            assert_eq!(r.notifications, 2);
            assert!(r.replies.contains_key(&id_key(&json!(4))));
            assert!(r.problem.is_none());
        }
        // Without a rewrite nothing is held back or replaced.
        let mut r = Responses::new("application/json", 1 << 20);
        r.as_lines();
        assert!(r.lines_chunk(stream.as_bytes(), false, None).is_none());
        r.finish();
        assert_eq!(r.notifications, 2);
        assert!(r.replies.contains_key(&id_key(&json!(4))));
    }

    #[test]
    fn rewrites_replies_in_json_and_sse() {
        let drop_b: &dyn Fn(&mut Value) -> bool = &|v| {
            let Some(tools) = v.pointer_mut("/result/tools").and_then(Value::as_array_mut) else {
                return false;
            };
            let before = tools.len();
            tools.retain(|t| t["name"] != "b");
            tools.len() != before
        };
        let reply = r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a"},{"name":"b"}]}}"#;
        let mut j = Responses::new("application/json", 1 << 20);
        let out = j.json_end(Some(reply.as_bytes()), Some(drop_b)).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["result"]["tools"], json!([{"name":"a"}]));
        let mut s = Responses::new("text/event-stream", 1 << 20);
        let stream = format!("event: message\nid: 9\ndata: {reply}\n\n");
        let (a, b) = stream.as_bytes().split_at(20);
        assert_eq!(
            s.sse_chunk(a, Some(drop_b)).unwrap(),
            b"",
            "incomplete: nothing yet"
        );
        let out = String::from_utf8(s.sse_chunk(b, Some(drop_b)).unwrap()).unwrap();
        assert!(out.starts_with("id: 9\ndata: {"), "{out}");
        assert!(!out.contains("\"b\""));
        assert!(out.ends_with("\n\n"));
    }
}
