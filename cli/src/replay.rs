//! `mcptrail replay --session ID`: one session as a readable transcript, from the collected
//! records alone: who, when, what was called with which (masked, as recorded) arguments,
//! how it ended and how long it took.

use anyhow::bail;
use serde_json::Value;

use crate::query::action;
use crate::records::{fmt_ms, Entry};

fn seconds(ms: u64) -> String {
    format!("{}.{:03}s", ms / 1000, ms % 1000)
}

fn who_long(e: &Entry) -> String {
    let Some(id) = &e.record.identity else {
        return "anonymous (no verified identity)".into();
    };
    let mut out = id
        .sub
        .as_deref()
        .or(id.email.as_deref())
        .unwrap_or("?")
        .to_string();
    if let Some(m) = id
        .email
        .as_deref()
        .filter(|m| Some(*m) != id.sub.as_deref())
    {
        out.push_str(&format!(" <{m}>"));
    }
    if !id.groups.is_empty() {
        out.push_str(&format!(" groups={}", id.groups.join(",")));
    }
    if let Some(c) = &id.client_id {
        out.push_str(&format!(" client_id={c}"));
    }
    if let Some(i) = &id.iss {
        out.push_str(&format!(" (issuer {i})"));
    }
    out
}

fn client(e: &Entry) -> Option<String> {
    let c = e.mcp()?.client.as_ref()?;
    let name = c.get("name").and_then(Value::as_str).unwrap_or("?");
    Some(match c.get("version").and_then(Value::as_str) {
        Some(ver) => format!("{name} {ver}"),
        None => name.to_string(),
    })
}

/// How a call ended, in words: `ok (HTTP 200, 12 ms, 512 bytes)`, with the JSON-RPC error.
fn outcome(e: &Entry) -> String {
    let Some(o) = &e.record.outcome else {
        return "-".into();
    };
    let mut parts = Vec::new();
    if let Some(h) = o.http_status {
        parts.push(format!("HTTP {h}"));
    }
    if let Some(d) = o.duration_ms {
        parts.push(format!("{d} ms"));
    }
    if let Some(b) = o.response_bytes {
        parts.push(format!("{b} bytes"));
    }
    let status = o.status.as_str();
    let mut out = if parts.is_empty() {
        status.to_string()
    } else {
        format!("{status} ({})", parts.join(", "))
    };
    if o.is_error {
        out.push_str(": the tool reported an error (isError)");
    }
    if let Some(err) = o.error.as_ref().filter(|e| !e.is_null()) {
        let code = err.get("code").map(Value::to_string);
        let msg = err.get("message").and_then(Value::as_str);
        match (code, msg) {
            (Some(c), Some(m)) => out.push_str(&format!(": JSON-RPC error {c} {m}")),
            _ => out.push_str(&format!(": JSON-RPC error {err}")),
        }
    }
    out
}

/// The transcript of `session` from `entries` (any order; several files may be mixed).
pub fn transcript(entries: &[Entry], session: &str) -> anyhow::Result<String> {
    let mut rows: Vec<&Entry> = entries
        .iter()
        .filter(|e| e.session() == Some(session))
        .collect();
    if rows.is_empty() {
        bail!("no records of session {session}");
    }
    // In the order the exchanges started (a record is written when its exchange ends); a
    // session.start comes before the initialize it was made from.
    rows.sort_by_key(|e| (e.started_ms(), e.kind() != "session.start"));
    let start = rows.iter().find(|e| e.kind() == "session.start");
    let end = rows.iter().rev().find(|e| e.kind() == "session.end");
    let first = rows.first().and_then(|e| e.started_ms());
    let last = rows.iter().filter_map(|e| e.ts_ms).max();
    let identified = start
        .copied()
        .or_else(|| rows.iter().copied().find(|e| e.record.identity.is_some()))
        .unwrap_or(rows[0]);

    let mut out = String::new();
    out.push_str(&format!("session {session}\n"));
    out.push_str(&format!("  who:      {}\n", who_long(identified)));
    if let Some(a) = identified
        .record
        .source
        .as_ref()
        .and_then(|s| s.address.as_deref())
    {
        out.push_str(&format!("  from:     {a}\n"));
    }
    if let Some(c) = rows.iter().find_map(|e| client(e)) {
        out.push_str(&format!("  client:   {c}\n"));
    }
    if let Some(p) = start.and_then(|s| s.mcp()?.protocol_version.as_deref()) {
        out.push_str(&format!("  protocol: {p}\n"));
    }
    out.push_str(&format!(
        "  span:     {} .. {}{}\n",
        fmt_ms(first),
        fmt_ms(last),
        match (first, last) {
            (Some(a), Some(b)) => format!(" ({})", seconds(b.saturating_sub(a))),
            _ => String::new(),
        }
    ));
    let calls = rows.iter().filter(|e| e.kind() == "command").count();
    let denied = rows
        .iter()
        .filter(|e| e.kind().ends_with(".denied"))
        .count();
    let vms: std::collections::HashSet<&str> =
        rows.iter().filter_map(|e| e.stream.as_deref()).collect();
    out.push_str(&format!(
        "  records:  {} ({calls} commands, {denied} denied){}\n\n",
        rows.len(),
        match vms.len() {
            0 => String::new(),
            1 => ", written by 1 Envoy VM".into(),
            n => format!(", written by {n} Envoy VMs"),
        }
    ));

    for e in &rows {
        let r = &e.record;
        let mcp = e.mcp();
        let at = match (e.started_ms(), first) {
            (Some(t), Some(f)) => format!("+{}", seconds(t.saturating_sub(f))),
            _ => "?".into(),
        };
        let when = fmt_ms(e.started_ms());
        let line = match e.kind() {
            "session.start" => format!(
                "session.start  opened by {}{}",
                e.who(),
                client(e).map_or_else(String::new, |c| format!(" with {c}"))
            ),
            "session.end" => {
                let s = r.session_summary.as_ref();
                let n = s.map_or(0, |s| s.commands);
                let d = s
                    .and_then(|s| s.duration_ms)
                    .map_or_else(|| "unknown length".into(), seconds);
                format!(
                    "session.end    {}; {n} commands seen, {d}",
                    r.reason.as_deref().unwrap_or("ended")
                )
            }
            kind => {
                let mut l = format!("{kind:<13}  {} {}", e.who(), action(e));
                if let Some(id) = mcp.and_then(|m| m.id.as_ref()).filter(|i| !i.is_null()) {
                    l.push_str(&format!(" [id {id}]"));
                }
                l.push_str(&format!(" -> {}", outcome(e)));
                l
            }
        };
        out.push_str(&format!("{at:>10}  {when}  {line}\n"));
        let pad = " ".repeat(38);
        if let Some(a) = mcp
            .and_then(|m| m.arguments.as_ref())
            .filter(|a| !a.is_null())
        {
            out.push_str(&format!("{pad}arguments: {a}\n"));
        }
        if !r.masked.is_empty() {
            out.push_str(&format!("{pad}masked:    {}\n", r.masked.join(", ")));
        }
        if e.kind() != "session.end" {
            if let Some(why) = &r.reason {
                out.push_str(&format!("{pad}reason:    {why}\n"));
            }
        }
        if let Some(a) = &r.auth {
            let a = serde_json::to_string(a).unwrap_or_default();
            out.push_str(&format!("{pad}auth:      {a}\n"));
        }
        if mcp.is_some_and(|m| m.header_mismatch) {
            out.push_str(&format!(
                "{pad}warning:   Mcp-Method/Mcp-Name headers disagree with the body\n"
            ));
        }
        if mcp.is_some_and(|m| m.session_identity_mismatch) {
            out.push_str(&format!(
                "{pad}warning:   the session was started by another identity\n"
            ));
        }
    }
    if end.is_none() {
        out.push_str(
            "\n(no session.end recorded in these files: the session may still be open, have \
             expired silently, or have ended on a VM whose trail is not among them)\n",
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::write_trail;
    use serde_json::json;

    fn rec(kind: &str, ts: &str, ms: u64, mcp: Value, outcome: Value) -> Value {
        json!({
            "v": 1, "kind": kind, "ts": ts, "id": "x", "session": "S1", "request_id": "r",
            "identity": {"sub": "alice", "iss": "https://idp", "email": "alice@example.com", "groups": ["eng"], "client_id": "agent-1"},
            "source": {"address": "10.0.0.7:5000"},
            "mcp": mcp,
            "outcome": {"status": outcome["status"], "http_status": outcome["http"], "is_error": outcome["is_error"].as_bool().unwrap_or(false), "error": outcome["error"], "duration_ms": ms, "response_bytes": 100},
            "masked": [],
        })
    }

    fn call(method: &str, id: u64, tool: Option<&str>, args: Value) -> Value {
        json!({"method": method, "id": id, "tool": tool, "arguments": args, "protocol_version": "2025-06-18"})
    }

    #[test]
    fn a_session_reads_in_order() {
        let init = json!({"method": "initialize", "id": 0, "tool": null, "arguments": null, "protocol_version": "2025-06-18", "client": {"name": "agent", "version": "1.0"}});
        let ok = json!({"status": "ok", "http": 200});
        let mut masked = rec(
            "command",
            "2026-11-24T10:00:02.000Z",
            500,
            call(
                "tools/call",
                2,
                Some("login"),
                json!({"user": "a", "password": "[REDACTED]"}),
            ),
            ok.clone(),
        );
        masked["masked"] = json!(["/params/arguments/password"]);
        let mut end = rec(
            "session.end",
            "2026-11-24T10:00:09.000Z",
            3,
            Value::Null,
            ok.clone(),
        );
        end["reason"] = json!("closed by the client (DELETE)");
        end["session_summary"] =
            json!({"started": "2026-11-24T10:00:00.000Z", "duration_ms": 9000, "commands": 3});
        let mut denied = rec(
            "policy.denied",
            "2026-11-24T10:00:05.000Z",
            1,
            call("tools/call", 4, Some("delete_user"), json!({"id": 3})),
            json!({"status": "denied", "http": 200}),
        );
        denied["reason"] = json!("denied by policy rule 1");
        denied["policy"] = json!({"rule": 1});
        let lines = vec![
            // Written out of order (a long call ends after a short one), and in another session.
            masked,
            rec(
                "command",
                "2026-11-24T10:00:00.050Z",
                50,
                init.clone(),
                ok.clone(),
            ),
            rec(
                "session.start",
                "2026-11-24T10:00:00.050Z",
                50,
                init,
                ok.clone(),
            ),
            rec(
                "command",
                "2026-11-24T10:00:01.800Z",
                10,
                call("tools/call", 3, Some("divide"), json!({"a": 1, "b": 0})),
                json!({"status": "error", "http": 200, "error": {"code": -32602, "message": "division by zero"}}),
            ),
            {
                let mut other = rec(
                    "command",
                    "2026-11-24T10:00:01.000Z",
                    1,
                    call("ping", 9, None, Value::Null),
                    ok.clone(),
                );
                other["session"] = json!("S2");
                other
            },
            denied,
            end,
        ];
        let (_d, entries) = write_trail(&lines);
        let t = transcript(&entries, "S1").unwrap();
        let body: Vec<&str> = t.lines().collect();
        assert_eq!(body[0], "session S1");
        assert!(t.contains("who:      alice <alice@example.com> groups=eng client_id=agent-1 (issuer https://idp)"), "{t}");
        assert!(t.contains("client:   agent 1.0"));
        assert!(t.contains("protocol: 2025-06-18"));
        assert!(t.contains("records:  6 (3 commands, 1 denied)"), "{t}");
        let order: Vec<usize> = [
            "session.start  opened by alice with agent 1.0",
            "initialize [id 0]",
            "tools/call login",
            "tools/call divide",
            "tools/call delete_user",
            "session.end    closed by the client (DELETE); 3 commands seen, 9.000s",
        ]
        .iter()
        .map(|s| t.find(s).unwrap_or_else(|| panic!("{s} missing:\n{t}")))
        .collect();
        assert!(
            order.windows(2).all(|w| w[0] < w[1]),
            "in start order:\n{t}"
        );
        assert!(
            t.contains("   +0.000s  2026-11-24T10:00:00.000Z  session.start"),
            "{t}"
        );
        assert!(t.contains("+1.500s  2026-11-24T10:00:01.500Z  command        alice tools/call login [id 2] -> ok (HTTP 200, 500 ms, 100 bytes)"), "{t}");
        let args = t
            .lines()
            .find(|l| l.trim_start().starts_with("arguments: {\""))
            .unwrap();
        assert!(
            args.contains(r#""password":"[REDACTED]""#) && args.contains(r#""user":"a""#),
            "{t}"
        );
        assert!(t.contains("masked:    /params/arguments/password"));
        assert!(
            t.contains(
                "-> error (HTTP 200, 10 ms, 100 bytes): JSON-RPC error -32602 division by zero"
            ),
            "{t}"
        );
        assert!(t.contains("reason:    denied by policy rule 1"));
        assert!(!t.contains("ping"), "another session's record");
        assert!(!t.contains("no session.end recorded"));
    }

    #[test]
    fn open_and_unknown_sessions() {
        let (_d, entries) = write_trail(&[rec(
            "command",
            "2026-11-24T10:00:00.000Z",
            5,
            call("tools/list", 1, None, Value::Null),
            json!({"status": "ok", "http": 200}),
        )]);
        let t = transcript(&entries, "S1").unwrap();
        assert!(t.contains("no session.end recorded"));
        assert!(transcript(&entries, "nope").is_err());
    }
}
