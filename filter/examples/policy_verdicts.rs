//! The filter's policy verdict on request bodies, as a filter of stdin: one base64 body per
//! line in, one JSON line out: `{"forwarded": bool, "calls": [[method, tool], ...]}`, where
//! `calls` is the filter's own reading of a forwarded body (the reading its decision used).
//! Each body goes through the glue (a recording fake host, the body in two chunks, as Envoy
//! may deliver it) under a policy that denies `delete_*` to everyone. Used by the
//! differential check against the official Python MCP SDK (`scripts/policy-differential.py`,
//! `make policy-diff`).

use std::io::{BufRead as _, Write as _};

use base64::Engine as _;
use mcptrail::filter::Root;
use mcptrail::host::fake::FakeHost;
use serde_json::{json, Value};

const CONFIG: &str = r#"{"audit":{"cluster":"audit"},"mcp":{"paths":["/mcp"]},"policy":{"rules":[{"tools":["delete_*"],"action":"deny"}]}}"#;

fn main() {
    let host = FakeHost::default();
    let mut root = Root::default();
    if !root.configure(&host, CONFIG.as_bytes()) {
        eprintln!("policy_verdicts: configuration refused");
        std::process::exit(2);
    }
    let stdin = std::io::stdin();
    let mut stdout = std::io::BufWriter::new(std::io::stdout());
    for (n, line) in stdin.lock().lines().enumerate() {
        let Ok(line) = line else { break };
        let Ok(body) = base64::engine::general_purpose::STANDARD.decode(line.trim()) else {
            eprintln!("policy_verdicts: line {n} is not base64");
            std::process::exit(2);
        };
        let forwarded = host.forwards(&root, &body, body.len() / 2);
        let calls: Vec<Value> = if forwarded {
            mcptrail::mcp::jsonrpc::decode_body(&body)
                .map(|items| {
                    items
                        .iter()
                        .map(|m| match m {
                            Ok(m) => json!([m.method, m.tool()]),
                            Err(_) => Value::Null,
                        })
                        .collect()
                })
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        let _ = writeln!(
            stdout,
            "{}",
            json!({"forwarded": forwarded, "calls": calls})
        );
        if n % 256 == 0 {
            // Keep the fake's logs and replies from growing without end.
            host.responses.borrow_mut().clear();
            host.logs.borrow_mut().clear();
            host.calls.borrow_mut().clear();
        }
    }
}
