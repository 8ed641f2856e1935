//! Operations over the whole trail (the stateless 2026-07-28 generation): the legs of a
//! multi-round-trip request and a task's calls, joined whichever VMs recorded them. The filter
//! links legs online where it can (the same id derived from the state or task id, or a link in
//! one Envoy process's shared data); where a leg landed on another replica it names an id of
//! its own, and the leg before it named that id as `mcp.next_operation`. This joins the two.

use std::collections::{HashMap, HashSet};

use crate::query::columns;
use crate::records::{fmt_ms, Entry};

/// Each operation id seen in `entries` mapped to the id of the operation it belongs to: the
/// `operation` of its earliest record.
pub fn join(entries: &[Entry]) -> HashMap<String, String> {
    let mut parent: HashMap<String, String> = HashMap::new();
    fn root(parent: &HashMap<String, String>, id: &str) -> String {
        let mut at = id.to_string();
        // Bounded: each step goes to an id seen earlier, and ids are finite.
        for _ in 0..=parent.len() {
            match parent.get(&at) {
                Some(p) if *p != at => at = p.clone(),
                _ => break,
            }
        }
        at
    }
    let mut by_time: Vec<&Entry> = entries
        .iter()
        .filter(|e| e.record.operation.is_some())
        .collect();
    by_time.sort_by_key(|e| e.started_ms());
    for e in by_time {
        let Some(op) = e.record.operation.as_deref() else {
            continue;
        };
        let op_root = root(&parent, op);
        parent
            .entry(op.to_string())
            .or_insert_with(|| op.to_string());
        if let Some(next) = e.mcp().and_then(|m| m.next_operation.as_deref()) {
            let next_root = root(&parent, next);
            // The later id joins the earlier one's operation.
            if next_root != op_root {
                parent.insert(next_root, op_root.clone());
            }
            parent.entry(next.to_string()).or_insert(op_root);
        }
    }
    let ids: Vec<String> = parent.keys().cloned().collect();
    ids.into_iter()
        .map(|id| {
            let r = root(&parent, &id);
            (id, r)
        })
        .collect()
}

/// The operation `e` belongs to, joined.
pub fn of<'a>(joined: &'a HashMap<String, String>, e: &'a Entry) -> Option<&'a str> {
    let op = e.record.operation.as_deref()?;
    Some(joined.get(op).map_or(op, String::as_str))
}

/// One operation over the whole trail.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OperationTotal {
    pub operation: String,
    pub user: String,
    /// The first leg's method and name (`tools/call deploy`).
    pub call: String,
    /// Each leg's outcome, in the order the legs started (`input_required > ok`).
    pub statuses: Vec<String>,
    pub task_id: Option<String>,
    /// The last task status seen.
    pub task_status: Option<String>,
    pub first_ms: Option<u64>,
    pub last_ms: Option<u64>,
    /// Distinct `chain.stream`s (Envoy VMs) that recorded its legs.
    pub vms: usize,
}

/// Totals per operation of more than one record (an operation of one call is that call), in
/// order of first leg.
pub fn totals(rows: &[&Entry], joined: &HashMap<String, String>) -> Vec<OperationTotal> {
    let mut order: Vec<String> = Vec::new();
    let mut legs: HashMap<String, Vec<&Entry>> = HashMap::new();
    let mut rows: Vec<&Entry> = rows.to_vec();
    rows.sort_by_key(|e| e.started_ms());
    for e in rows {
        let Some(op) = of(joined, e) else { continue };
        legs.entry(op.to_string())
            .or_insert_with(|| {
                order.push(op.to_string());
                Vec::new()
            })
            .push(e);
    }
    order
        .into_iter()
        .filter_map(|op| {
            let legs = legs.remove(&op)?;
            let first = legs.first()?;
            let calls: Vec<&&Entry> = legs.iter().filter(|e| e.kind() == "command").collect();
            (legs.len() > 1).then(|| OperationTotal {
                user: first.who().to_string(),
                call: crate::query::action(first),
                statuses: calls
                    .iter()
                    .filter_map(|e| e.record.outcome.as_ref())
                    .map(|o| o.status.as_str().to_string())
                    .collect(),
                task_id: legs.iter().find_map(|e| e.mcp()?.task_id.clone()),
                task_status: legs.iter().rev().find_map(|e| e.mcp()?.task_status.clone()),
                first_ms: first.started_ms(),
                last_ms: legs.iter().filter_map(|e| e.ts_ms).max(),
                vms: legs
                    .iter()
                    .filter_map(|e| e.stream.as_deref())
                    .collect::<HashSet<_>>()
                    .len(),
                operation: op,
            })
        })
        .collect()
}

/// The operation totals as a table.
pub fn table(totals: &[OperationTotal]) -> String {
    let head = [
        "OPERATION",
        "USER",
        "CALL",
        "LEGS",
        "OUTCOMES",
        "TASK",
        "FIRST",
        "LAST",
        "VMS",
    ];
    let mut cells: Vec<Vec<String>> = vec![head.iter().map(|s| s.to_string()).collect()];
    for t in totals {
        let task = match (&t.task_id, &t.task_status) {
            (Some(id), Some(s)) => format!("{id} ({s})"),
            (Some(id), None) => id.clone(),
            _ => "-".into(),
        };
        cells.push(vec![
            t.operation.clone(),
            t.user.clone(),
            t.call.clone(),
            t.statuses.len().to_string(),
            t.statuses.join(" > "),
            task,
            fmt_ms(t.first_ms),
            fmt_ms(t.last_ms),
            t.vms.to_string(),
        ]);
    }
    let mut out = columns(&cells);
    out.push_str(&format!(
        "{} operations of more than one record\n",
        totals.len()
    ));
    out
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::records::write_trail;

    fn leg(ts: &str, op: &str, next: Option<&str>, status: &str, stream: &str) -> Value {
        json!({"v": 1, "kind": "command", "ts": ts, "id": format!("id-{ts}"), "session": null,
               "request_id": null, "operation": op,
               "identity": {"sub": "alice", "iss": "i", "email": null, "groups": [], "client_id": null},
               "source": null,
               "mcp": {"method": "tools/call", "id": 1, "tool": "deploy", "arguments": {},
                       "protocol_version": "2026-07-28", "next_operation": next},
               "outcome": {"status": status, "http_status": 200, "is_error": false, "error": null,
                           "duration_ms": 1, "response_bytes": 10},
               "masked": [], "chain": {"stream": stream, "seq": 1, "prev": "0", "mac": null}})
    }

    #[test]
    fn legs_recorded_on_other_replicas_join_their_operation() {
        let (_dir, entries) = write_trail(&[
            leg(
                "2026-12-01T10:00:00.000Z",
                "st-1",
                None,
                "input_required",
                "vm-a",
            ),
            leg(
                "2026-12-01T10:00:01.000Z",
                "st-1",
                Some("st-2"),
                "input_required",
                "vm-b",
            ),
            // The third leg landed where the link was unknown: it derived st-2 itself.
            leg(
                "2026-12-01T10:00:02.000Z",
                "st-2",
                Some("st-3"),
                "input_required",
                "vm-c",
            ),
            leg("2026-12-01T10:00:03.000Z", "st-3", None, "ok", "vm-a"),
            leg("2026-12-01T10:00:04.000Z", "own-5", None, "ok", "vm-a"),
        ]);
        let joined = join(&entries);
        let ops: Vec<&str> = entries.iter().filter_map(|e| of(&joined, e)).collect();
        assert_eq!(ops, ["st-1", "st-1", "st-1", "st-1", "own-5"]);
        let rows: Vec<&Entry> = entries.iter().collect();
        let t = totals(&rows, &joined);
        assert_eq!(t.len(), 1, "a call by itself is not listed");
        assert_eq!(
            t[0].statuses,
            ["input_required", "input_required", "input_required", "ok"]
        );
        assert_eq!((t[0].vms, t[0].user.as_str()), (3, "alice"));
        assert!(table(&t).contains("input_required > input_required > input_required > ok"));
    }
}
