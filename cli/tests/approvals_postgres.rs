//! Two approval service replicas on one PostgreSQL: a `once` approval goes to exactly one of
//! many concurrent checks, whichever replica each lands on. A throwaway cluster is made in a
//! temp directory with the system's PostgreSQL binaries (Debian's `postgresql` package);
//! without them the test fails, it does not skip.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use mcptrail_cli::approvals::{Config, Service};
use mcptrail_cli::issuer;
use serde_json::{json, Value};

const API_KEY: &str = "test-api-key-0123456789";
const ISS: &str = "https://idp.test";
const SHA: &str = "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd";

fn pg_bin(name: &str) -> PathBuf {
    for dir in [
        "/usr/lib/postgresql/17/bin",
        "/usr/lib/postgresql/16/bin",
        "/usr/lib/postgresql/15/bin",
    ] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!("PostgreSQL binaries not found: apt-get install -y postgresql");
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Runs a PostgreSQL binary, as the `postgres` user when we are root (it refuses root).
fn pg(name: &str, args: &[&str]) {
    let bin = pg_bin(name);
    let status = if is_root() {
        Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(&bin)
            .args(args)
            .status()
    } else {
        Command::new(&bin).args(args).status()
    }
    .unwrap();
    assert!(status.success(), "{name} {args:?} failed");
}

struct Cluster {
    data: PathBuf,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let d = self.data.to_string_lossy().to_string();
        pg("pg_ctl", &["-D", &d, "-m", "immediate", "-w", "stop"]);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn serve(service: &Service) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    let app = service.router();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    format!("http://{a}")
}

async fn check(http: &reqwest::Client, base: &str) -> Value {
    http.post(format!("{base}/v1/check"))
        .header("x-api-key", API_KEY)
        .json(&json!({
            "subject": {"sub": "alice", "iss": ISS},
            "method": "tools/call", "tool": "drop_table",
            "arguments": {"table": "users"}, "arguments_sha256": SHA,
            "session": null, "request_id": "r"
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_on_postgres_spend_a_once_approval_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("pg");
    std::fs::create_dir(&data).unwrap();
    if is_root() {
        let s = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(s.success());
    }
    let d = data.to_string_lossy().to_string();
    pg(
        "initdb",
        &["-D", &d, "-U", "postgres", "--auth=trust", "-E", "UTF8"],
    );
    let port = free_port().to_string();
    let opts = format!("-p {port} -k {d} -c listen_addresses=127.0.0.1");
    let log = format!("{d}/log");
    pg(
        "pg_ctl",
        &["-D", &d, "-o", &opts, "-l", &log, "-w", "start"],
    );
    let _cluster = Cluster { data: data.clone() };
    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");

    let kp = issuer::load_or_create_key(&dir.path().join("idp.pem")).unwrap();
    let cfg = Config::parse(
        &json!({
            "issuer": ISS, "audiences": ["approvals"], "jwks": issuer::jwks(&kp),
            "approver_groups": ["approvers"], "public_url": "http://approvals.test",
            "api_keys": [API_KEY],
        })
        .to_string(),
    )
    .unwrap();
    // Both replicas migrate at once: one does, the other waits for it.
    let (a, b) = tokio::join!(Service::start(cfg.clone(), &url), Service::start(cfg, &url));
    let (a, b) = (a.unwrap(), b.unwrap());
    let (base_a, base_b) = (serve(&a).await, serve(&b).await);
    let http = reqwest::Client::new();

    // One pending request, whichever replica is asked.
    let p = check(&http, &base_a).await;
    assert_eq!(p["decision"], "pending");
    let id = p["id"].as_str().unwrap().to_string();
    assert_eq!(check(&http, &base_b).await["id"], id.as_str());

    let bob = issuer::mint(
        &kp,
        &issuer::TokenSpec {
            issuer: ISS.into(),
            audience: "approvals".into(),
            subject: "bob".into(),
            groups: vec!["approvers".into()],
            email: None,
            client_id: None,
            ttl_s: 600,
        },
    )
    .unwrap();
    // Approved on replica B, spent on either.
    let r = http
        .post(format!("{base_b}/api/requests/{id}/approve"))
        .bearer_auth(&bob)
        .json(&json!({"mode": "once"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // A replayed approval on the other replica changes nothing.
    let r = http
        .post(format!("{base_a}/api/requests/{id}/approve"))
        .bearer_auth(&bob)
        .json(&json!({"mode": "window", "window_s": 60}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 409);

    let mut tasks = Vec::new();
    for i in 0..40 {
        let base = if i % 2 == 0 {
            base_a.clone()
        } else {
            base_b.clone()
        };
        let http = http.clone();
        tasks.push(tokio::spawn(async move { check(&http, &base).await }));
    }
    let mut approved = 0;
    let mut pending_ids = std::collections::HashSet::new();
    for t in tasks {
        let v = t.await.unwrap();
        match v["decision"].as_str() {
            Some("approved") => approved += 1,
            Some("pending") => {
                pending_ids.insert(v["id"].as_str().unwrap().to_string());
            }
            other => panic!("unexpected {other:?}: {v}"),
        }
    }
    assert_eq!(approved, 1, "a once approval is spent exactly once");
    // The others all wait on one new request, not one per replica or per check.
    assert_eq!(pending_ids.len(), 1, "{pending_ids:?}");
    a.shutdown(Duration::from_secs(1)).await.unwrap();
    b.shutdown(Duration::from_secs(1)).await.unwrap();
}
