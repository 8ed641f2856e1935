//! The official MCP conformance suite (npm `@modelcontextprotocol/conformance`, the scenarios
//! the 2026-07-28 revision requires) run against the official Python SDK server twice: directly,
//! and through Envoy with the filter in its strictest mode (answers and requests masked, a policy
//! that can deny, so every body is held and judged). Every check that passes directly passes
//! through the filter; the trail of the run verifies.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use mcptrail_integration::envoy::{tools_dir, Envoy, EnvoySpec};
use mcptrail_integration::pyserver;
use mcptrail_integration::{base_plugin_config, Collector};
use serde_json::{json, Value};

/// Runs the suite against `url`; each check's status by (scenario, check id).
fn run_suite(url: &str, out: &Path) -> BTreeMap<(String, String), String> {
    let status = Command::new(tools_dir().join("bin/mcp-conformance"))
        .args(["server", "--url", url, "--requirements", "2026-07-28", "-o"])
        .arg(out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("the conformance runner (make setup)");
    // Non-zero when any scenario fails, which the suite's own server side does too: the
    // comparison below is the test.
    let _ = status;
    let mut checks = BTreeMap::new();
    for dir in std::fs::read_dir(out).unwrap().flatten() {
        let name = dir.file_name().to_string_lossy().to_string();
        // `server-<scenario>-<YYYY-MM-DDTHH-MM-SS-mmmZ>`
        let scenario = scenario_of(&name);
        let Ok(text) = std::fs::read_to_string(dir.path().join("checks.json")) else {
            continue;
        };
        let list: Vec<Value> = serde_json::from_str(&text).unwrap_or_default();
        for c in list {
            if let (Some(id), Some(st)) = (c["id"].as_str(), c["status"].as_str()) {
                checks.insert((scenario.clone(), id.to_string()), st.to_string());
            }
        }
    }
    checks
}

/// The scenario a result folder is for: its name without the run's timestamp.
fn scenario_of(folder: &str) -> String {
    let b = folder.as_bytes();
    let stamp = (0..b.len()).find(|&i| {
        let digits = |r: std::ops::Range<usize>| {
            r.clone()
                .all(|j| b.get(i + j).is_some_and(u8::is_ascii_digit))
        };
        b.get(i) == Some(&b'-')
            && digits(1..5)
            && b.get(i + 5) == Some(&b'-')
            && digits(6..8)
            && b.get(i + 8) == Some(&b'-')
            && digits(9..11)
            && b.get(i + 11) == Some(&b'T')
    });
    folder
        .get(..stamp.unwrap_or(folder.len()))
        .unwrap_or(folder)
        .to_string()
}

#[test]
fn result_folders_name_their_scenario() {
    for (folder, scenario) in [
        (
            "server-tools-call-image-2026-12-07T03-14-56-203Z",
            "server-tools-call-image",
        ),
        (
            "server-sep-2164-resource-not-found-2026-12-07T02-20-20-020Z",
            "server-sep-2164-resource-not-found",
        ),
    ] {
        assert_eq!(scenario_of(folder), scenario);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_check_that_passes_directly_passes_through_the_filter() {
    let server = tokio::task::block_in_place(pyserver::fixture_server);
    let collector = Collector::start().await.unwrap();
    let mut cfg = base_plugin_config();
    cfg["mcp"]["record_notifications"] = json!(true);
    cfg["masking"] = json!({"detectors": ["email"], "fields": ["password"], "responses": true, "requests": true});
    cfg["policy"] = json!({"rules": [{"tools": ["never_offered"], "action": "deny"}]});
    let spec = EnvoySpec::mcp(cfg, server.addr, collector.addr);
    let envoy = tokio::task::block_in_place(|| Envoy::start(&spec, 2)).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let direct_url = format!("http://{}/mcp", server.addr);
    let filter_url = format!("{}/mcp", envoy.url());
    let (direct, through) = tokio::task::block_in_place(|| {
        (
            run_suite(&direct_url, &dir.path().join("direct")),
            run_suite(&filter_url, &dir.path().join("filter")),
        )
    });
    let passed =
        |m: &BTreeMap<(String, String), String>| m.values().filter(|s| *s == "SUCCESS").count();
    let lost: Vec<&(String, String)> = direct
        .iter()
        .filter(|(k, s)| *s == "SUCCESS" && through.get(*k).map(String::as_str) != Some("SUCCESS"))
        .map(|(k, _)| k)
        .collect();
    let gained: Vec<&(String, String)> = through
        .iter()
        .filter(|(k, s)| *s == "SUCCESS" && direct.get(*k).map(String::as_str) != Some("SUCCESS"))
        .map(|(k, _)| k)
        .collect();
    let _ = writeln!(
        std::io::stdout(),
        "conformance (2026-07-28 requirements, official Python SDK server): {} checks; {} pass directly, {} through the filter (strict mode); lost {lost:?}; gained {gained:?}",
        direct.len(),
        passed(&direct),
        passed(&through)
    );
    assert!(direct.len() > 100, "the suite ran: {} checks", direct.len());
    assert!(
        direct.keys().eq(through.keys()),
        "the same checks ran both ways"
    );
    assert!(
        lost.is_empty(),
        "checks that pass directly fail through the filter: {lost:?}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(collector.verify().problems.is_empty());
    assert!(
        collector
            .records()
            .iter()
            .any(|r| r["mcp"]["method"] == "server/discover"),
        "the run is in the trail"
    );
    drop(envoy);
}
