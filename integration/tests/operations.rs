//! The stateless 2026-07-28 generation through real Envoy, audited as operations: the official
//! Python SDK client against an official Python SDK server whose tool asks for input twice
//! (two `input_required` rounds, the state sealed by the server), each request sent to the
//! other of two Envoy replicas (4 and 2 workers) on a fresh connection. The three legs of the
//! call are one operation in the trail: online where the protocol's state links them, joined
//! by `query --operations` where a leg landed on the other replica.

use std::io::Write;
use std::process::Command;

use mcptrail_cli::{operations, records};
use mcptrail_integration::envoy::{loopback, repo_root, tools_dir, Envoy, EnvoySpec};
use mcptrail_integration::pyserver;
use mcptrail_integration::{base_plugin_config, Collector, DevIssuer};
use serde_json::{json, Value};

const AUD: &str = "https://mcp.test/mcp";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_legs_of_a_stateless_call_are_one_operation_across_replicas() {
    let idp = DevIssuer::start(loopback(0), None).await.unwrap();
    let trail_a = Collector::start().await.unwrap();
    let trail_b = Collector::start().await.unwrap();
    let server = tokio::task::block_in_place(pyserver::fixture_server);
    let mut cfg = base_plugin_config();
    cfg["auth"] = idp.auth_config(AUD, "idp");
    cfg["masking"] = json!({"fields": ["password"]});
    let replica = |trail: &Collector, workers: u32| {
        let mut spec = EnvoySpec::mcp(cfg.clone(), server.addr, trail.addr);
        spec.clusters.push(idp.cluster("idp"));
        tokio::task::block_in_place(|| Envoy::start(&spec, workers)).unwrap()
    };
    let (a, b) = (replica(&trail_a, 4), replica(&trail_b, 2));
    let alice = idp.token("alice", &["eng"], AUD);

    let out = tokio::task::block_in_place(|| {
        Command::new(tools_dir().join("venv/bin/python"))
            .arg(repo_root().join("integration/py/operations_client.py"))
            .args(["--token", &alice])
            .arg(format!("{}/mcp", a.url()))
            .arg(format!("{}/mcp", b.url()))
            .output()
            .unwrap()
    });
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "client failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["deploy"][0], "deployed to prod within 5 min", "{v}");

    // The three legs of deploy and the echo, in both trails together.
    let deploy_legs = |all: &[Value]| -> Vec<Value> {
        let mut legs: Vec<Value> = all
            .iter()
            .filter(|r| r["kind"] == "command" && r["mcp"]["tool"] == "deploy")
            .cloned()
            .collect();
        legs.sort_by_key(|r| r["mcp"]["id"].as_u64());
        legs
    };
    let all = Collector::wait_for_all(
        &[&trail_a, &trail_b],
        "the deploy legs and the echo",
        |all| deploy_legs(all).len() == 3 && all.iter().any(|r| r["mcp"]["tool"] == "echo"),
    )
    .await
    .unwrap();
    let legs = deploy_legs(&all);
    assert_eq!(legs.len(), 3, "{all:#?}");
    let statuses: Vec<&Value> = legs.iter().map(|r| &r["outcome"]["status"]).collect();
    assert_eq!(statuses, ["input_required", "input_required", "ok"]);
    for (leg, asked) in legs.iter().zip(["approval", "window"]) {
        let keys = leg["mcp"]["input_requests"].as_object().unwrap();
        assert!(keys.keys().any(|k| k.contains(asked)), "{leg}");
        assert!(keys.values().all(|m| m == "elicitation/create"));
    }
    for leg in &legs {
        assert_eq!(leg["mcp"]["protocol_version"], "2026-07-28");
        assert_eq!(leg["session"], Value::Null);
        assert_eq!(leg["identity"]["sub"], "alice");
        assert!(!leg.to_string().contains("hunter2"), "masked: {leg}");
    }
    let answered = &legs[1]["mcp"]["input_responses"];
    assert_eq!(
        answered.as_object().unwrap().values().next().unwrap()["content"]["password"],
        "[REDACTED]"
    );
    // Each request went to the other replica: the legs alternate.
    let on_a: Vec<bool> = legs
        .iter()
        .map(|l| trail_a.records().iter().any(|r| r["id"] == l["id"]))
        .collect();
    assert!(on_a[0] != on_a[1] && on_a[1] != on_a[2], "{on_a:?}");
    // The state the first leg was handed links the second, on the other replica.
    assert_eq!(legs[0]["operation"], legs[1]["operation"]);
    assert!(legs[0]["operation"].as_str().unwrap().starts_with("st-"));
    // The third leg echoed a newer state, again on the other replica: it names the id the
    // second leg handed on, and the trail's reader joins it.
    assert_eq!(legs[2]["operation"], legs[1]["mcp"]["next_operation"]);
    let (entries, skipped) = records::read_files(&[&trail_a.out, &trail_b.out]).unwrap();
    assert!(skipped.is_empty(), "{skipped:?}");
    let joined = operations::join(&entries);
    let rows: Vec<&records::Entry> = entries.iter().collect();
    let totals = operations::totals(&rows, &joined);
    let deploy = totals
        .iter()
        .find(|t| t.call.contains("deploy"))
        .expect("the deploy operation");
    assert_eq!(
        deploy.statuses,
        ["input_required", "input_required", "ok"],
        "{deploy:?}"
    );
    assert_eq!(deploy.operation, legs[0]["operation"].as_str().unwrap());
    assert!(deploy.vms >= 2);
    // The echo stands alone: its operation is its own record id.
    let echo = all.iter().find(|r| r["mcp"]["tool"] == "echo").unwrap();
    assert_eq!(echo["operation"], echo["id"]);
    let discover = all.iter().find(|r| r["mcp"]["method"] == "server/discover");
    assert!(discover.is_some(), "server/discover is a command record");
    assert!(trail_a.verify().problems.is_empty());
    assert!(trail_b.verify().problems.is_empty());
    let _ = writeln!(
        std::io::stdout(),
        "operations: deploy over {} legs on {} VMs of 2 replicas: {}; operation {}",
        deploy.statuses.len(),
        deploy.vms,
        deploy.statuses.join(" > "),
        deploy.operation
    );
    drop((a, b));
}
