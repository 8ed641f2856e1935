//! The approvals page in a real headless Chromium (Debian's package, driven by
//! playwright-core): approvers sign in at the dev authorization server (oidc-provider; OIDC
//! code + PKCE through the service's `/login` and `/callback`), approve and deny; a requester
//! cannot approve their own request; a non-approver is told so. The decisions are then read
//! back from the service and from the collector's trail.

use mcptrail_integration::approvals::{Approvals, API_KEY};
use mcptrail_integration::authz::{Authz, AuthzSpec, APPROVALS_CLIENT_ID};
use mcptrail_integration::envoy::loopback;
use mcptrail_integration::process::free_port;
use mcptrail_integration::{Collector, TEST_HMAC_KEY_B64};
use serde_json::{json, Value};

/// The service's answer to a check, as the filter sends it.
async fn check(http: &reqwest::Client, base: &str, body: &Value) -> Value {
    http.post(format!("{base}/v1/check"))
        .header("x-api-key", API_KEY)
        .json(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// A call held for `sub`.
async fn hold(http: &reqwest::Client, base: &str, sub: &str, table: &str) -> String {
    let body = json!({
        "subject": {"sub": sub, "iss": "dev", "groups": ["eng"], "email": format!("{sub}@example.com")},
        "method": "tools/call",
        "tool": "delete_records",
        "arguments": {"table": table, "password": "[REDACTED]"},
        "arguments_sha256": format!("{:064x}", table.len()),
        "session": null,
        "request_id": null,
    });
    let r = check(http, base, &body).await;
    assert_eq!(r["decision"], "pending", "{r}");
    r["id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvers_sign_in_and_decide_in_a_real_browser() {
    let collector = Collector::start().await.unwrap();
    let port = free_port().unwrap();
    let public = format!("http://127.0.0.1:{port}");
    let authz = tokio::task::block_in_place(|| {
        Authz::start_with(&AuthzSpec {
            approvals_redirect: Some(format!("{public}/callback")),
            ..AuthzSpec::default()
        })
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = json!({
        "issuer": authz.issuer,
        "audiences": [public],
        "jwks_uri": authz.url("/.well-known/jwks.json"),
        "approver_groups": ["admins"],
        "public_url": public,
        "api_keys": [API_KEY],
        "audit": {"url": format!("http://{}/ingest", collector.addr), "hmac_key": TEST_HMAC_KEY_B64},
        "oidc": {"client_id": APPROVALS_CLIENT_ID},
    });
    let mut service = Approvals::start(loopback(port), config, &dir.path().join("a.db"))
        .await
        .unwrap();
    let http = reqwest::Client::new();
    // The requests use the issuer's `iss`, so bob's own is recognised as his.
    let approve = hold(&http, &service.url, "alice", "orders").await;
    let deny = hold(&http, &service.url, "alice", "users").await;
    let own_body = json!({
        "subject": {"sub": "bob", "iss": authz.issuer, "groups": ["admins"]},
        "method": "tools/call", "tool": "delete_records",
        "arguments": {"table": "audit"}, "arguments_sha256": "ab".repeat(32),
    });
    let own = check(&http, &service.url, &own_body).await["id"]
        .as_str()
        .unwrap()
        .to_string();

    let shots = tempfile::tempdir().unwrap();
    let args = json!({
        "page": service.url, "approve": approve, "deny": deny, "own": own,
        "shots": shots.path(),
    });
    let seen = tokio::task::block_in_place(|| {
        mcptrail_integration::browser::run("approvals_page.mjs", &args)
    })
    .unwrap_or_else(|e| panic!("the browser run failed:\n{e}\nauthz log:\n{}", authz.log()));
    println!("the page showed: {seen}");
    assert_eq!(seen["bob_signin_page"], authz.issuer.as_str());
    assert!(seen["returned_to"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/requests/{approve}")));
    assert_eq!(seen["focused"], true, "the client's URL shows its request");
    assert!(seen["signed_in_as"].as_str().unwrap().contains("bob"));
    assert_eq!(seen["pending_cards"], 3);
    assert!(seen["shown_args"].as_str().unwrap().contains("[REDACTED]"));
    assert!(seen["after_approve"].as_str().unwrap().contains("approved"));
    assert!(seen["after_deny"].as_str().unwrap().contains("denied"));
    assert_eq!(seen["own_still_pending"], true, "{}", seen["own"]);
    assert!(seen["alice"].as_str().unwrap().contains("not an approver"));
    assert_eq!(seen["alice_sees_requests"], false);
    for shot in ["approvals-page.png", "approvals-decided.png"] {
        let len = std::fs::metadata(shots.path().join(shot)).unwrap().len();
        assert!(len > 10_000, "{shot}: {len} bytes");
    }
    if let Ok(keep) = std::env::var("MCPTRAIL_SCREENSHOTS") {
        for shot in ["approvals-page.png", "approvals-decided.png"] {
            std::fs::copy(
                shots.path().join(shot),
                std::path::Path::new(&keep).join(shot),
            )
            .unwrap();
        }
    }

    // What the service holds now (the same calls checked again), and what the trail says.
    let again = |table: &str| {
        json!({
            "subject": {"sub": "alice", "iss": "dev"}, "method": "tools/call",
            "tool": "delete_records", "arguments": {},
            "arguments_sha256": format!("{:064x}", table.len()),
        })
    };
    let orders = check(&http, &service.url, &again("orders")).await;
    assert_eq!(
        (orders["decision"].as_str(), orders["approved_by"].as_str()),
        (Some("approved"), Some("bob")),
        "{orders}"
    );
    let users = check(&http, &service.url, &again("users")).await;
    assert_eq!(users["decision"], "denied", "{users}");
    assert_eq!(users["decided_by"], "bob", "{users}");
    service.stop().await;
    let decided: Vec<Value> = collector
        .records()
        .into_iter()
        .filter(|r| r["kind"] == "approval.decided")
        .collect();
    assert_eq!(decided.len(), 2, "{decided:?}");
    assert!(decided.iter().all(|d| d["identity"]["sub"] == "bob"));
    assert!(decided.iter().any(
        |d| d["approval"]["note"] == "not this table" && d["approval"]["decision"] == "denied"
    ));
    assert!(collector.verify().problems.is_empty());
}
