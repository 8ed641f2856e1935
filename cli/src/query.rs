//! `mcptrail query`: filters collected records by user, tool, method, kind, session, status
//! and time, and prints a table (or the matching lines, NDJSON).

use mcptrail::policy::Glob;

use crate::records::{fmt_ms, Entry};

/// What to keep. Within one criterion, any value may match; all criteria must hold.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// `identity.sub` or `identity.email`, exactly.
    pub users: Vec<String>,
    /// Globs (`*`, `?`) on `mcp.tool`.
    pub tools: Vec<String>,
    /// Globs on `mcp.method`.
    pub methods: Vec<String>,
    /// Globs on `kind` (`session.*`, `*.denied`).
    pub kinds: Vec<String>,
    pub sessions: Vec<String>,
    /// `outcome.status`.
    pub statuses: Vec<String>,
    /// `ts` at or after this (Unix ms).
    pub since_ms: Option<u64>,
    /// `ts` before this (Unix ms).
    pub until_ms: Option<u64>,
}

fn any_glob(globs: &[String], v: Option<&str>) -> bool {
    globs.is_empty() || v.is_some_and(|v| globs.iter().any(|g| Glob::new(g).matches(v)))
}

fn any_eq(values: &[String], v: Option<&str>) -> bool {
    values.is_empty() || v.is_some_and(|v| values.iter().any(|x| x == v))
}

impl Filter {
    pub fn matches(&self, e: &Entry) -> bool {
        let id = e.record.identity.as_ref();
        let users = self.users.is_empty()
            || any_eq(&self.users, id.and_then(|i| i.sub.as_deref()))
            || any_eq(&self.users, id.and_then(|i| i.email.as_deref()));
        let time = match e.ts_ms {
            Some(t) => self.since_ms.is_none_or(|s| t >= s) && self.until_ms.is_none_or(|u| t < u),
            None => self.since_ms.is_none() && self.until_ms.is_none(),
        };
        let mcp = e.mcp();
        let outcome = e.record.outcome.as_ref();
        users
            && time
            && any_glob(&self.tools, mcp.and_then(|m| m.tool.as_deref()))
            && any_glob(&self.methods, mcp.and_then(|m| m.method.as_deref()))
            && any_glob(&self.kinds, Some(e.kind()))
            && any_eq(&self.sessions, e.session())
            && any_eq(&self.statuses, outcome.map(|o| o.status.as_str()))
    }
}

/// The records that match, in time order (`ts`; file order for equal times, records
/// without a time first).
pub fn select<'a>(filter: &Filter, entries: &'a [Entry]) -> Vec<&'a Entry> {
    let mut out: Vec<&Entry> = entries.iter().filter(|e| filter.matches(e)).collect();
    out.sort_by_key(|e| e.ts_ms);
    out
}

/// What a record did, in a few words: `tools/call echo`, `resources/read file:///x`,
/// `dropped 3 (buffer_full)`, ...
pub fn action(e: &Entry) -> String {
    if let Some(d) = &e.record.dropped {
        return format!("dropped {} ({})", d.count, d.reason.as_str());
    }
    let Some(mcp) = e.mcp() else {
        return match e.kind() {
            "session.end" => "(session end)".into(),
            _ => "-".into(),
        };
    };
    let target = mcp
        .tool
        .as_deref()
        .or(mcp.prompt.as_deref())
        .or(mcp.resource.as_deref());
    match (mcp.method.as_deref(), target) {
        (Some(m), Some(t)) => format!("{m} {t}"),
        (Some(m), None) => m.to_string(),
        (None, _) => "(response)".into(),
    }
}

fn cell(v: Option<impl ToString>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

/// Rows of cells as aligned columns (the last column unpadded).
pub(crate) fn columns(cells: &[Vec<String>]) -> String {
    let n = cells.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..n)
        .map(|c| {
            cells
                .iter()
                .map(|r| r.get(c).map_or(0, |t| t.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in cells {
        let mut line = String::new();
        for (c, text) in r.iter().enumerate() {
            if c + 1 == r.len() {
                line.push_str(text);
            } else {
                line.push_str(&format!("{text:<w$}  ", w = widths[c]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The table: one row per record, then a count.
pub fn table(rows: &[&Entry], total: usize) -> String {
    let head = [
        "TIME", "KIND", "USER", "SESSION", "ACTION", "STATUS", "HTTP", "MS", "WHERE",
    ];
    let mut cells: Vec<Vec<String>> = vec![head.iter().map(|s| s.to_string()).collect()];
    for e in rows {
        let session = e.session().map_or_else(
            || "-".to_string(),
            |s| s.chars().take(12).collect::<String>(),
        );
        let outcome = e.record.outcome.as_ref();
        cells.push(vec![
            fmt_ms(e.ts_ms),
            e.kind().to_string(),
            e.who().to_string(),
            session,
            action(e),
            cell(outcome.map(|o| o.status.as_str())),
            cell(outcome.and_then(|o| o.http_status)),
            cell(e.duration_ms()),
            format!("{}:{}", e.file, e.line),
        ]);
    }
    let mut out = columns(&cells);
    out.push_str(&format!("{} of {total} records\n", rows.len()));
    out
}

/// One session over the whole trail, whichever VMs wrote its records.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SessionTotal {
    pub session: String,
    /// Who opened it (`session.start`), else the first caller seen.
    pub user: String,
    pub first_ms: Option<u64>,
    pub last_ms: Option<u64>,
    pub commands: usize,
    pub denied: usize,
    /// Commands that ended in an error (JSON-RPC error, `isError`, upstream error, aborted).
    pub errors: usize,
    pub records: usize,
    /// Distinct `chain.stream`s (Envoy VMs) that wrote its records.
    pub vms: usize,
    pub started: bool,
    pub ended: bool,
}

/// Totals per session, in order of first record.
pub fn session_totals(rows: &[&Entry]) -> Vec<SessionTotal> {
    let mut order: Vec<String> = Vec::new();
    let mut by: std::collections::HashMap<
        String,
        (SessionTotal, std::collections::HashSet<String>),
    > = std::collections::HashMap::new();
    for e in rows {
        let Some(id) = e.session() else { continue };
        let (t, vms) = by.entry(id.to_string()).or_insert_with(|| {
            order.push(id.to_string());
            let t = SessionTotal {
                session: id.to_string(),
                ..Default::default()
            };
            (t, Default::default())
        });
        t.records += 1;
        t.first_ms = match (t.first_ms, e.started_ms()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        t.last_ms = t.last_ms.max(e.ts_ms);
        if let Some(s) = &e.stream {
            vms.insert(s.clone());
        }
        let status = e.record.outcome.as_ref().map(|o| o.status.as_str());
        match e.kind() {
            "session.start" => {
                t.started = true;
                t.user = e.who().to_string();
            }
            "session.end" => t.ended = true,
            "command" => {
                t.commands += 1;
                if matches!(status, Some("error" | "upstream_error" | "aborted")) {
                    t.errors += 1;
                }
            }
            k if k.ends_with(".denied") => t.denied += 1,
            _ => {}
        }
        if t.user.is_empty() {
            t.user = e.who().to_string();
        }
    }
    order
        .into_iter()
        .filter_map(|id| by.remove(&id))
        .map(|(mut t, vms)| {
            t.vms = vms.len();
            t
        })
        .collect()
}

/// The session totals as a table.
pub fn sessions_table(totals: &[SessionTotal]) -> String {
    let head = [
        "SESSION", "USER", "FIRST", "LAST", "COMMANDS", "DENIED", "ERRORS", "RECORDS", "VMS",
        "STATE",
    ];
    let mut cells: Vec<Vec<String>> = vec![head.iter().map(|s| s.to_string()).collect()];
    for t in totals {
        let state = match (t.started, t.ended) {
            (_, true) => "ended",
            (true, false) => "open",
            (false, false) => "open (start not in these files)",
        };
        cells.push(vec![
            t.session.clone(),
            t.user.clone(),
            fmt_ms(t.first_ms),
            fmt_ms(t.last_ms),
            t.commands.to_string(),
            t.denied.to_string(),
            t.errors.to_string(),
            t.records.to_string(),
            t.vms.to_string(),
            state.to_string(),
        ]);
    }
    let mut out = columns(&cells);
    out.push_str(&format!("{} sessions\n", totals.len()));
    out
}

/// The matching lines exactly as stored (NDJSON).
pub fn ndjson(rows: &[&Entry]) -> String {
    let mut out = String::new();
    for e in rows {
        out.push_str(&e.raw);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{parse_time, write_trail};
    use serde_json::{json, Value};

    // 2026-11-24T10:30:00.000Z
    const NOW: u64 = 1_795_516_200_000;

    fn rec(
        ts: &str,
        sub: Option<&str>,
        kind: &str,
        method: &str,
        tool: Option<&str>,
        status: &str,
    ) -> Value {
        json!({
            "v": 1, "kind": kind, "ts": ts, "id": "x", "session": "sess-alice-1", "request_id": "r",
            "identity": sub.map(|s| json!({"sub": s, "iss": "i", "email": format!("{s}@example.com"), "groups": [], "client_id": null})),
            "source": {"address": "127.0.0.1:1"},
            "mcp": {"method": method, "id": 1, "tool": tool, "arguments": tool.map(|_| json!({"q": 1})), "protocol_version": "2025-06-18"},
            "outcome": {"status": status, "http_status": 200, "is_error": false, "error": null, "duration_ms": 12, "response_bytes": 10},
            "masked": [],
        })
    }

    fn sample() -> (tempfile::TempDir, Vec<Entry>) {
        let lines = [
            rec(
                "2026-11-23T09:00:00.000Z",
                Some("alice"),
                "command",
                "tools/call",
                Some("query_db"),
                "ok",
            ),
            rec(
                "2026-11-22T23:59:59.999Z",
                Some("alice"),
                "command",
                "tools/call",
                Some("echo"),
                "ok",
            ),
            rec(
                "2026-11-23T12:00:00.000Z",
                Some("bob"),
                "command",
                "tools/call",
                Some("query_db"),
                "error",
            ),
            rec(
                "2026-11-23T13:00:00.000Z",
                Some("alice"),
                "policy.denied",
                "tools/call",
                Some("delete_user"),
                "denied",
            ),
            rec(
                "2026-11-24T08:00:00.000Z",
                Some("alice"),
                "command",
                "tools/list",
                None,
                "ok",
            ),
            rec(
                "2026-11-23T14:00:00.000Z",
                None,
                "auth.denied",
                "initialize",
                None,
                "denied",
            ),
            json!({"v": 1, "kind": "audit.dropped", "ts": "2026-11-23T15:00:00.000Z", "id": "d", "session": null,
                   "request_id": null, "identity": null, "source": null, "mcp": null, "outcome": null, "masked": [],
                   "dropped": {"count": 3, "reason": "buffer_full"}}),
        ];
        write_trail(&lines)
    }

    fn lines_of(rows: &[&Entry]) -> Vec<usize> {
        rows.iter().map(|e| e.line).collect()
    }

    #[test]
    fn what_did_alice_do_yesterday() {
        let (_d, entries) = sample();
        let f = Filter {
            users: vec!["alice".into()],
            since_ms: Some(parse_time("yesterday", NOW, false).unwrap()),
            until_ms: Some(parse_time("yesterday", NOW, true).unwrap()),
            ..Default::default()
        };
        // In time order; not the day before, not today, not bob.
        assert_eq!(lines_of(&select(&f, &entries)), vec![1, 4]);
        // The email names her too.
        let by_email = Filter {
            users: vec!["alice@example.com".into()],
            ..f.clone()
        };
        assert_eq!(lines_of(&select(&by_email, &entries)), vec![1, 4]);
    }

    #[test]
    fn criteria() {
        let (_d, entries) = sample();
        let q = |f: Filter| lines_of(&select(&f, &entries));
        assert_eq!(q(Filter::default()), vec![2, 1, 3, 4, 6, 7, 5]);
        let tools = |t: &[&str]| Filter {
            tools: t.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        assert_eq!(q(tools(&["query_*"])), vec![1, 3]);
        assert_eq!(q(tools(&["echo", "delete_?ser"])), vec![2, 4]);
        let kinds = Filter {
            kinds: vec!["*.denied".into()],
            ..Default::default()
        };
        assert_eq!(q(kinds), vec![4, 6]);
        let status = Filter {
            statuses: vec!["error".into(), "denied".into()],
            ..Default::default()
        };
        assert_eq!(q(status), vec![3, 4, 6]);
        let session = Filter {
            sessions: vec!["sess-alice-1".into()],
            methods: vec!["tools/list".into()],
            ..Default::default()
        };
        assert_eq!(q(session), vec![5]);
        let window = Filter {
            since_ms: Some(parse_time("2026-11-23T12:00:00Z", NOW, false).unwrap()),
            until_ms: Some(parse_time("2026-11-23T14:00:00Z", NOW, true).unwrap()),
            ..Default::default()
        };
        assert_eq!(q(window), vec![3, 4], "since inclusive, until exclusive");
        let recent = Filter {
            since_ms: Some(parse_time("3h", NOW, false).unwrap()),
            ..Default::default()
        };
        assert_eq!(q(recent), vec![5]);
        let nobody = Filter {
            users: vec!["carol".into()],
            ..Default::default()
        };
        assert!(q(nobody).is_empty());
    }

    #[test]
    fn session_totals_span_every_vm() {
        let on = |mut v: Value, session: &str, stream: &str| {
            v["session"] = json!(session);
            v["chain"] = json!({"stream": stream, "seq": 1, "prev": "0".repeat(64)});
            v
        };
        let lines = [
            on(
                rec(
                    "2026-11-23T09:00:00.000Z",
                    Some("alice"),
                    "session.start",
                    "initialize",
                    None,
                    "ok",
                ),
                "S1",
                "vm-a",
            ),
            on(
                rec(
                    "2026-11-23T09:00:01.000Z",
                    Some("alice"),
                    "command",
                    "tools/call",
                    Some("read"),
                    "ok",
                ),
                "S1",
                "vm-b",
            ),
            on(
                rec(
                    "2026-11-23T09:00:02.000Z",
                    Some("alice"),
                    "command",
                    "tools/call",
                    Some("read"),
                    "error",
                ),
                "S1",
                "vm-c",
            ),
            on(
                rec(
                    "2026-11-23T09:00:03.000Z",
                    Some("mallory"),
                    "auth.denied",
                    "tools/call",
                    Some("read"),
                    "denied",
                ),
                "S1",
                "vm-b",
            ),
            on(
                rec(
                    "2026-11-23T09:00:04.000Z",
                    Some("alice"),
                    "session.end",
                    "",
                    None,
                    "ok",
                ),
                "S1",
                "vm-d",
            ),
            on(
                rec(
                    "2026-11-23T10:00:00.000Z",
                    Some("bob"),
                    "command",
                    "tools/list",
                    None,
                    "ok",
                ),
                "S2",
                "vm-a",
            ),
        ];
        let (_dir, entries) = write_trail(&lines);
        let rows = select(&Filter::default(), &entries);
        let t = session_totals(&rows);
        assert_eq!(t.len(), 2);
        let s1 = &t[0];
        assert_eq!((s1.session.as_str(), s1.user.as_str()), ("S1", "alice"));
        assert_eq!(
            (s1.commands, s1.denied, s1.errors, s1.records, s1.vms),
            (2, 1, 1, 5, 4)
        );
        assert!(s1.started && s1.ended);
        assert!(!t[1].started && !t[1].ended);
        let table = sessions_table(&t);
        assert!(
            table.lines().next().unwrap().starts_with("SESSION"),
            "{table}"
        );
        assert!(table.contains("open (start not in these files)"), "{table}");
        assert!(table.ends_with("2 sessions\n"));
    }

    #[test]
    fn table_and_ndjson() {
        let (_d, entries) = sample();
        let rows = select(&Filter::default(), &entries);
        let t = table(&rows, entries.len());
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("TIME  "), "{t}");
        assert!(lines[0].contains("ACTION"));
        assert_eq!(lines.len(), 1 + 7 + 1);
        assert!(
            lines[1].starts_with("2026-11-22T23:59:59.999Z  command"),
            "{t}"
        );
        assert!(lines[1].contains("tools/call echo"));
        assert!(lines[1].ends_with("audit.ndjson:2"));
        assert!(t.contains("dropped 3 (buffer_full)"));
        assert!(t.contains("auth.denied"));
        assert_eq!(lines[8], "7 of 7 records");
        // Columns line up.
        let at = lines[0].find("ACTION").unwrap();
        assert!(lines[1..8]
            .iter()
            .all(|l| l.chars().nth(at - 1) == Some(' ')));
        let n = ndjson(&rows[..2]);
        assert_eq!(n.lines().count(), 2);
        assert_eq!(n.lines().next().unwrap(), entries[1].raw);
    }
}
