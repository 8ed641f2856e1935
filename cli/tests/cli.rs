//! The `mcptrail` binary's exit statuses and output for verify, query and replay.

use std::process::{Command, Output};

use mcptrail::audit::chain::Chain;

const KEY_B64: &str = "c2VjcmV0LWtleS1mb3ItZGVtby1vbmx5";

fn mcptrail(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mcptrail"))
        .args(args)
        .env_remove("MCPTRAIL_HMAC_KEY")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// A small sealed trail: alice's session (3 records) and bob's call.
fn trail(dir: &std::path::Path) -> (std::path::PathBuf, Vec<String>) {
    let mut chain = Chain::new(
        "00000000000000f1".into(),
        Some(b"secret-key-for-demo-only".to_vec()),
    );
    let rec = |kind: &str, ts: &str, sub: &str, tool: Option<&str>| {
        format!(
            r#"{{"v":1,"kind":"{kind}","ts":"{ts}","id":"x","session":"S-{sub}","request_id":null,"identity":{{"sub":"{sub}","iss":null,"email":null,"groups":[],"client_id":null}},"source":null,"mcp":{{"method":"tools/call","id":1,"tool":{},"arguments":null,"protocol_version":null}},"outcome":{{"status":"ok","http_status":200,"is_error":false,"error":null,"duration_ms":3,"response_bytes":9}},"masked":[]}}"#,
            tool.map_or("null".to_string(), |t| format!("\"{t}\""))
        )
    };
    let lines: Vec<String> = [
        rec("session.start", "2026-11-23T10:00:00.000Z", "alice", None),
        rec(
            "command",
            "2026-11-23T10:00:01.000Z",
            "alice",
            Some("query_db"),
        ),
        rec("command", "2026-11-23T10:00:02.000Z", "bob", Some("echo")),
        rec(
            "command",
            "2026-11-23T10:00:03.000Z",
            "alice",
            Some("delete_user"),
        ),
    ]
    .iter()
    .map(|r| chain.seal(r.to_string()))
    .collect();
    let f = dir.join("audit.ndjson");
    std::fs::write(&f, lines.join("\n") + "\n").unwrap();
    (f, lines)
}

#[test]
fn verify_exit_status_and_report() {
    let dir = tempfile::tempdir().unwrap();
    let (f, lines) = trail(dir.path());
    let path = f.to_str().unwrap();
    let ok = mcptrail(&["verify", "--hmac-key", KEY_B64, path]);
    assert!(ok.status.success());
    assert_eq!(
        text(&ok),
        "stream 00000000000000f1: 4 records, last seq 4, 0 reported dropped, open (no audit.closed; last record at 2026-11-23T10:00:03.000Z)\nok: 1 streams verified, 1 open\n"
    );
    // The trail of a stopped Envoy must be closed: this one was cut off.
    let open = mcptrail(&["verify", "--hmac-key", KEY_B64, "--expect-closed", path]);
    assert_eq!(open.status.code(), Some(1));
    assert!(text(&open).contains("1 streams are open (--expect-closed)"));
    // Delete a line: reported with its line, non-zero exit.
    let mut cut = lines.clone();
    cut.remove(1);
    std::fs::write(&f, cut.join("\n") + "\n").unwrap();
    let bad = mcptrail(&["verify", "--hmac-key", KEY_B64, path]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        text(&bad).starts_with(&format!(
            "{path}:2: gap: stream 00000000000000f1 jumps from seq 1 to 3\n"
        )),
        "{}",
        text(&bad)
    );
    assert!(text(&bad).ends_with("FAILED: 1 problems, 1 open streams\n"));
    // The key from the environment; a wrong key fails every MAC.
    let env = Command::new(env!("CARGO_BIN_EXE_mcptrail"))
        .args(["verify", path])
        .env("MCPTRAIL_HMAC_KEY", "b3RoZXIta2V5")
        .output()
        .unwrap();
    assert_eq!(env.status.code(), Some(1));
    assert!(text(&env).contains(":1: bad mac"));
    // Unreadable input is a usage error.
    assert_eq!(mcptrail(&["verify", "/nonexistent"]).status.code(), Some(2));
}

#[test]
fn query_and_replay_from_the_file_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (f, lines) = trail(dir.path());
    let path = f.to_str().unwrap();
    let q = mcptrail(&[
        "query",
        "--user",
        "alice",
        "--tool",
        "*_*",
        "--since",
        "2026-11-23",
        "--until",
        "2026-11-23",
        "--json",
        path,
    ]);
    assert!(q.status.success());
    assert_eq!(text(&q), format!("{}\n{}\n", lines[1], lines[3]));
    let table = mcptrail(&["query", "--kind", "command", "--user", "bob", path]);
    assert!(text(&table).contains("tools/call echo"));
    assert!(text(&table).ends_with("1 of 4 records\n"));
    let bad_time = mcptrail(&["query", "--since", "soon", path]);
    assert_eq!(bad_time.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad_time.stderr).contains("`soon` is not a time"));
    let r = mcptrail(&["replay", "--session", "S-alice", path]);
    assert!(r.status.success());
    let t = text(&r);
    assert!(t.starts_with("session S-alice\n  who:      alice\n"), "{t}");
    assert!(t.contains("tools/call query_db") && t.contains("tools/call delete_user"));
    assert!(!t.contains("echo"));
    assert_eq!(
        mcptrail(&["replay", "--session", "nope", path])
            .status
            .code(),
        Some(2)
    );
}
