//! The approval service over HTTP: a temp SQLite file, an inline JWKS, tokens minted here, a
//! real collector receiving the decisions, and a restart on the same database.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jwt_simple::prelude::*;
use mcptrail_cli::approvals::{Config, Service};
use mcptrail_cli::{collector, issuer, verify};
use serde_json::{json, Value};

const API_KEY: &str = "test-api-key-0123456789";
const ISS: &str = "https://idp.test";
const AUD: &str = "approvals";
const HMAC_B64: &str = "c2VjcmV0LWtleS1mb3ItdGVzdHMtMDEyMzQ1Njc4OQ==";
const SHA_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const SHA_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const SHA_C: &str = "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";

async fn listen() -> (tokio::net::TcpListener, SocketAddr) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    (l, a)
}

struct Running {
    base: String,
    service: Service,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<()>,
}

async fn start(config: &Config, db: &str) -> Running {
    let service = Service::start(config.clone(), db).await.unwrap();
    let (l, a) = listen().await;
    let app = service.router();
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(l, app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    Running {
        base: format!("http://{a}"),
        service,
        stop,
        server,
    }
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(());
        self.server.await.unwrap();
        self.service.shutdown(Duration::from_secs(5)).await.unwrap();
    }
}

struct Idp {
    kp: RS256KeyPair,
}

impl Idp {
    fn token(&self, sub: &str, groups: &[&str]) -> String {
        issuer::mint(
            &self.kp,
            &issuer::TokenSpec {
                issuer: ISS.into(),
                audience: AUD.into(),
                subject: sub.into(),
                groups: groups.iter().map(|g| g.to_string()).collect(),
                email: None,
                client_id: None,
                ttl_s: 600,
            },
        )
        .unwrap()
    }
}

fn config(jwks: Value, collector: &str, notify: &str) -> Config {
    Config::parse(
        &json!({
            "issuer": ISS,
            "audiences": [AUD],
            "jwks": jwks,
            "approver_groups": ["approvers"],
            "public_url": "http://approvals.test:8787/",
            "api_keys": [API_KEY],
            "notify_url": notify,
            "audit": {"url": collector, "hmac_key": HMAC_B64},
        })
        .to_string(),
    )
    .unwrap()
}

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    /// A check as the filter sends it (with the API key): status and answer.
    async fn check(&self, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}/v1/check", self.base))
            .header("x-api-key", API_KEY)
            .json(body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn check_as(&self, sub: &str, tool: &str, sha: &str) -> Value {
        let (status, v) = self
            .check(&json!({
                "subject": {"sub": sub, "iss": ISS, "groups": ["eng"]},
                "method": "tools/call",
                "tool": tool,
                "arguments": {"path": "/srv/data", "password": "[REDACTED]"},
                "arguments_sha256": sha,
                "session": "s-1",
                "request_id": "r-1",
            }))
            .await;
        assert_eq!(status, 200, "{v}");
        v
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<(&str, String)>,
    ) -> (u16, Value) {
        let mut rb = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base));
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        if let Some((ct, b)) = body {
            rb = rb.header("content-type", ct).body(b);
        }
        let r = rb.send().await.unwrap();
        let status = r.status().as_u16();
        let v = r.json().await.unwrap_or(Value::Null);
        (status, v)
    }

    async fn post_json(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        self.call(
            "POST",
            path,
            Some(token),
            Some(("application/json", body.to_string())),
        )
        .await
    }

    async fn status_of(&self, id: &str, token: &str) -> String {
        let (s, v) = self
            .call("GET", &format!("/api/requests/{id}"), Some(token), None)
            .await;
        assert_eq!(s, 200, "{v}");
        v["status"].as_str().unwrap().to_string()
    }
}

async fn start_collector(out: &Path) -> String {
    let (l, a) = listen().await;
    let app = collector::router(&collector::Options {
        out: out.to_path_buf(),
        hmac_key: Some(verify::decode_key(HMAC_B64).unwrap()),
        echo: false,
    })
    .await
    .unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    format!("http://{a}/v1/records")
}

async fn start_webhook() -> (String, Arc<Mutex<Vec<Value>>>) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = Arc::clone(&got);
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(v): axum::Json<Value>| {
            let g = Arc::clone(&g);
            async move {
                g.lock().unwrap().push(v);
                "ok"
            }
        }),
    );
    let (l, a) = listen().await;
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (format!("http://{a}/hook"), got)
}

fn expired_token(kp: &RS256KeyPair, sub: &str) -> String {
    let mut claims = Claims::create(Duration::from_secs(60).into())
        .with_issuer(ISS)
        .with_audience(AUD)
        .with_subject(sub);
    let now = Clock::now_since_epoch();
    claims.issued_at = Some(now - Duration::from_secs(600).into());
    claims.expires_at = Some(now - Duration::from_secs(300).into());
    kp.sign(claims).unwrap()
}

fn db_path(dir: &Path) -> PathBuf {
    dir.join("approvals.db")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn approvals_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let kp = issuer::load_or_create_key(&dir.path().join("idp.pem")).unwrap();
    let other_kp = RS256KeyPair::generate(2048).unwrap().with_key_id("other");
    let idp = Idp { kp };
    let trail = dir.path().join("trail.ndjson");
    let collector_url = start_collector(&trail).await;
    let (hook, hooks) = start_webhook().await;
    let cfg = config(issuer::jwks(&idp.kp), &collector_url, &hook);
    let db = db_path(dir.path());
    let db = db.to_str().unwrap();
    let svc = start(&cfg, db).await;
    let c = Client {
        http: reqwest::Client::new(),
        base: svc.base.clone(),
    };

    let alice = idp.token("alice", &["eng", "approvers"]);
    let bob = idp.token("bob", &["approvers"]);
    let carol = idp.token("carol", &["eng"]);

    // Health, and the check's API key.
    let (s, _) = c.call("GET", "/healthz", None, None).await;
    assert_eq!(s, 200);
    let (s, v) = c
        .call(
            "POST",
            "/v1/check",
            None,
            Some(("application/json", "{}".into())),
        )
        .await;
    assert_eq!((s, v["error"].as_str()), (401, Some("bad_api_key")));

    // A first check creates a pending request; a second one finds the same.
    let p1 = c.check_as("alice", "rm", SHA_A).await;
    assert_eq!(p1["decision"], "pending", "{p1}");
    let id1 = p1["id"].as_str().unwrap().to_string();
    assert!(id1.starts_with("apr_") && id1.len() == 26, "{id1}");
    assert_eq!(
        p1["url"],
        format!("http://approvals.test:8787/requests/{id1}")
    );
    // A call that names no tool (a review rule on `methods`) is keyed by its method; with
    // neither, the check is refused (the filter then refuses the call).
    let read = json!({"subject": {"sub": "alice", "iss": ISS}, "method": "resources/read",
        "tool": null, "arguments": {"uri": "file:///etc/app.conf"}, "arguments_sha256": SHA_A});
    let (s, v) = c.check(&read).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["decision"], "pending", "{v}");
    let (_, shown) = c
        .call(
            "GET",
            &format!("/api/requests/{}", v["id"].as_str().unwrap()),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(shown["tool"], "resources/read", "{shown}");
    let mut nameless = read.clone();
    nameless["method"] = Value::Null;
    let (s, v) = c.check(&nameless).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("bad_request")), "{v}");

    let again = c.check_as("alice", "rm", SHA_A).await;
    assert_eq!(
        (again["decision"].as_str(), again["id"].as_str()),
        (Some("pending"), Some(id1.as_str()))
    );

    // Approvers see it, masked arguments as given.
    let (s, v) = c
        .call("GET", "/api/requests?status=pending", Some(&bob), None)
        .await;
    assert_eq!(s, 200);
    let listed = v["requests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id1.as_str())
        .unwrap();
    assert_eq!(listed["id"], id1.as_str());
    assert_eq!(listed["caller"]["sub"], "alice");
    assert_eq!(listed["arguments"]["password"], "[REDACTED]");
    assert_eq!(listed["arguments_sha256"], SHA_A);

    // Refusals that change nothing.
    let approve = format!("/api/requests/{id1}/approve");
    let (s, v) = c.post_json(&approve, &alice, json!({"mode": "once"})).await;
    assert_eq!((s, v["error"].as_str()), (403, Some("own_request")), "{v}");
    let (s, v) = c.post_json(&approve, &carol, json!({"mode": "once"})).await;
    assert_eq!((s, v["error"].as_str()), (403, Some("not_an_approver")));
    let (s, v) = c
        .call(
            "POST",
            &approve,
            None,
            Some(("application/json", "{}".into())),
        )
        .await;
    assert_eq!((s, v["error"].as_str()), (401, Some("missing_token")));
    let foreign = issuer::mint(
        &idp.kp,
        &issuer::TokenSpec {
            issuer: "https://evil.test".into(),
            audience: AUD.into(),
            subject: "mallory".into(),
            groups: vec!["approvers".into()],
            email: None,
            client_id: None,
            ttl_s: 600,
        },
    )
    .unwrap();
    let (s, v) = c.post_json(&approve, &foreign, json!({})).await;
    assert_eq!((s, v["error"].as_str()), (401, Some("unknown_issuer")));
    let unknown_key = issuer::mint(
        &other_kp,
        &issuer::TokenSpec {
            issuer: ISS.into(),
            audience: AUD.into(),
            subject: "mallory".into(),
            groups: vec!["approvers".into()],
            email: None,
            client_id: None,
            ttl_s: 600,
        },
    )
    .unwrap();
    let (s, v) = c.post_json(&approve, &unknown_key, json!({})).await;
    assert_eq!((s, v["error"].as_str()), (401, Some("unknown_kid")));
    let (s, v) = c
        .post_json(&approve, &expired_token(&idp.kp, "bob"), json!({}))
        .await;
    assert_eq!((s, v["error"].as_str()), (401, Some("expired")));
    let (s, _) = c.post_json(&approve, "not.a.token", json!({})).await;
    assert_eq!(s, 401);
    let (s, v) = c
        .call(
            "POST",
            &approve,
            Some(&bob),
            Some(("application/json", "{\"mode\":".into())),
        )
        .await;
    assert_eq!((s, v["error"].as_str()), (400, Some("bad_json")));
    let (s, v) = c
        .call(
            "POST",
            &approve,
            Some(&bob),
            Some(("text/plain", "{}".into())),
        )
        .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (415, Some("unsupported_media_type"))
    );
    let (s, v) = c
        .post_json(&approve, &bob, json!({"mode": "once", "forever": true}))
        .await;
    assert_eq!((s, v["error"].as_str()), (400, Some("bad_json")));
    assert!(v["message"].as_str().unwrap().contains("forever"), "{v}");
    let (s, v) = c
        .post_json(
            &approve,
            &bob,
            json!({"mode": "once", "note": "x".repeat(1001)}),
        )
        .await;
    assert_eq!((s, v["error"].as_str()), (400, Some("note_too_long")));
    let (s, v) = c
        .post_json(&approve, &bob, json!({"mode": "window", "window_s": 86401}))
        .await;
    assert_eq!((s, v["error"].as_str()), (400, Some("bad_decision")));
    let (s, v) = c
        .post_json(&approve, &bob, json!({"note": "y".repeat(20_000)}))
        .await;
    assert_eq!((s, v["error"].as_str()), (413, Some("body_too_large")));
    let (s, v) = c
        .post_json(
            "/api/requests/apr_nope/approve",
            &bob,
            json!({"mode": "once"}),
        )
        .await;
    assert_eq!((s, v["error"].as_str()), (404, Some("not_found")));
    assert_eq!(c.status_of(&id1, &bob).await, "pending");

    // Approved once: one call, then a new request.
    let (s, v) = c
        .post_json(
            &approve,
            &bob,
            json!({"mode": "once", "note": "ok for today"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["status"].as_str(), v["decided_by"].as_str()),
        (Some("approved"), Some("bob"))
    );
    let (s, v) = c
        .post_json(&approve, &bob, json!({"mode": "window", "window_s": 60}))
        .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (409, Some("already_decided")),
        "replay"
    );
    let (s, _) = c
        .post_json(&format!("/api/requests/{id1}/deny"), &bob, json!({}))
        .await;
    assert_eq!(s, 409);
    let ok = c.check_as("alice", "rm", SHA_A).await;
    assert_eq!(
        (
            ok["decision"].as_str(),
            ok["mode"].as_str(),
            ok["approved_by"].as_str(),
            ok["id"].as_str()
        ),
        (
            Some("approved"),
            Some("once"),
            Some("bob"),
            Some(id1.as_str())
        )
    );
    let next = c.check_as("alice", "rm", SHA_A).await;
    assert_eq!(next["decision"], "pending");
    let id2 = next["id"].as_str().unwrap().to_string();
    assert_ne!(id2, id1);

    // Denied: sticks, with who and why.
    let (s, v) = c
        .post_json(
            &format!("/api/requests/{id2}/deny"),
            &bob,
            json!({"note": "not on prod"}),
        )
        .await;
    assert_eq!((s, v["status"].as_str()), (200, Some("denied")), "{v}");
    let denied = c.check_as("alice", "rm", SHA_A).await;
    assert_eq!(denied["decision"], "denied");
    assert_eq!(denied["reason"], "denied by bob: not on prod");
    // Other arguments need their own approval.
    assert_eq!(
        c.check_as("alice", "rm", SHA_B).await["decision"],
        "pending"
    );

    // A window: the caller and tool, any arguments; not other tools or callers.
    let w = c.check_as("alice", "ls", SHA_A).await;
    let id3 = w["id"].as_str().unwrap().to_string();
    let (s, _) = c
        .post_json(
            &format!("/api/requests/{id3}/approve"),
            &bob,
            json!({"mode": "window", "window_s": 600}),
        )
        .await;
    assert_eq!(s, 200);
    for sha in [SHA_A, SHA_C, SHA_C] {
        let v = c.check_as("alice", "ls", sha).await;
        assert_eq!(
            (v["decision"].as_str(), v["mode"].as_str()),
            (Some("approved"), Some("window"))
        );
    }
    assert_eq!(
        c.check_as("alice", "cat", SHA_A).await["decision"],
        "pending"
    );
    assert_eq!(
        c.check_as("carol", "ls", SHA_A).await["decision"],
        "pending"
    );

    // Many concurrent checks share one once approval: exactly one gets it.
    let race = c.check_as("alice", "drop", SHA_A).await;
    let id4 = race["id"].as_str().unwrap().to_string();
    let (s, _) = c
        .post_json(
            &format!("/api/requests/{id4}/approve"),
            &bob,
            json!({"mode": "once"}),
        )
        .await;
    assert_eq!(s, 200);
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let c = Client {
            http: c.http.clone(),
            base: c.base.clone(),
        };
        tasks.push(tokio::spawn(async move {
            c.check_as("alice", "drop", SHA_A).await
        }));
    }
    let mut approved = 0;
    for t in tasks {
        if t.await.unwrap()["decision"] == "approved" {
            approved += 1;
        }
    }
    assert_eq!(approved, 1);

    // The webhook named caller, tool and page, never argument values.
    let hooked = hooks.lock().unwrap().clone();
    assert!(!hooked.is_empty());
    let text = hooked[0]["text"].as_str().unwrap();
    assert!(
        text.contains("alice") && text.contains("`rm`") && text.contains(&id1),
        "{text}"
    );
    assert!(hooked.iter().all(|h| !h.to_string().contains("/srv/data")));

    // Restart on the same database: the state is kept.
    svc.stop().await;
    let svc = start(&cfg, db).await;
    let c = Client {
        http: c.http.clone(),
        base: svc.base.clone(),
    };
    assert_eq!(c.status_of(&id1, &bob).await, "approved");
    assert_eq!(c.check_as("alice", "rm", SHA_A).await["decision"], "denied");
    assert_eq!(c.check_as("alice", "ls", SHA_B).await["mode"], "window");
    let (s, v) = c
        .call("GET", "/api/requests?status=denied", Some(&bob), None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(v["requests"][0]["id"], id2.as_str());
    // A decision after the restart goes on a new stream.
    let id5 = c.check_as("alice", "cat", SHA_A).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, _) = c
        .post_json(&format!("/api/requests/{id5}/deny"), &bob, json!({}))
        .await;
    assert_eq!(s, 200);
    svc.stop().await;

    // The collected decisions verify (both streams closed) and carry the approver.
    let report = verify::verify_with(
        verify::Options {
            key: Some(verify::decode_key(HMAC_B64).unwrap()),
            expect_closed: true,
            ..verify::Options::default()
        },
        &[&trail],
    )
    .unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.streams.len(), 2);
    assert!(report.streams.iter().all(|s| s.closed));
    let text = std::fs::read_to_string(&trail).unwrap();
    let decided: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["kind"] == "approval.decided")
        .collect();
    assert_eq!(decided.len(), 5, "id1, id2, id3, id4, id5");
    let first = &decided[0];
    assert_eq!(first["identity"]["sub"], "bob");
    assert_eq!(first["identity"]["iss"], ISS);
    assert_eq!(first["identity"]["groups"], json!(["approvers"]));
    assert_eq!(first["approval"]["id"], id1.as_str());
    assert_eq!(first["approval"]["decision"], "approved");
    assert_eq!(first["approval"]["mode"], "once");
    assert_eq!(first["approval"]["note"], "ok for today");
    assert_eq!(first["approval"]["requester"]["sub"], "alice");
    assert_eq!(first["approval"]["arguments_sha256"], SHA_A);
    assert_eq!(first["mcp"]["tool"], "rm");
    assert_eq!(first["mcp"]["arguments"]["password"], "[REDACTED]");
    assert_eq!(decided[1]["approval"]["decision"], "denied");
    assert_eq!(decided[2]["approval"]["window_s"], 600);
}

#[tokio::test]
async fn config_names_unknown_keys_and_login_redirects_with_pkce() {
    let err = Config::parse(r#"{"issuer":"x","audiences":["a"],"jwks":{"keys":[]},"approver_groups":["g"],"public_url":"http://h","api_keys":["0123456789abcdef"],"grant_ttl":5}"#)
        .unwrap_err();
    assert!(format!("{err:#}").contains("grant_ttl"), "{err:#}");

    // A discovery document served by the dev issuer; /login redirects there with PKCE S256,
    // state, nonce and the resource.
    let dir = tempfile::tempdir().unwrap();
    let kp = issuer::load_or_create_key(&dir.path().join("idp.pem")).unwrap();
    let (l, a) = listen().await;
    let iss = format!("http://{a}");
    let jwks = issuer::jwks(&kp);
    let discovery = json!({
        "issuer": iss,
        "authorization_endpoint": format!("{iss}/authorize"),
        "token_endpoint": format!("{iss}/token"),
        "jwks_uri": format!("{iss}/.well-known/jwks.json"),
    });
    let idp = axum::Router::new()
        .route(
            "/.well-known/jwks.json",
            axum::routing::get(move || async move { axum::Json(jwks) }),
        )
        .route(
            "/.well-known/openid-configuration",
            axum::routing::get(move || async move { axum::Json(discovery) }),
        );
    tokio::spawn(async move { axum::serve(l, idp).await.unwrap() });
    let mut cfg: Value = json!({
        "issuer": iss,
        "audiences": [AUD],
        "jwks_uri": format!("{iss}/.well-known/jwks.json"),
        "approver_groups": ["approvers"],
        "public_url": "http://approvals.test",
        "api_keys": [API_KEY],
        "oidc": {"client_id": "approvals-page"},
    });
    let cfg = Config::parse(&cfg.take().to_string()).unwrap();
    let db = db_path(dir.path());
    let svc = start(&cfg, db.to_str().unwrap()).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = http
        .get(format!("{}/login?return=/requests/apr_x", svc.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let u = url::Url::parse(&loc).unwrap();
    let q: std::collections::HashMap<String, String> = u.query_pairs().into_owned().collect();
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["client_id"], "approvals-page");
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["redirect_uri"], "http://approvals.test/callback");
    assert_eq!(q["resource"], "http://approvals.test");
    assert!(q["scope"].contains("openid"));
    assert!(!q["state"].is_empty() && !q["nonce"].is_empty());
    // An unknown state is refused.
    let r = http
        .get(format!("{}/callback?code=x&state=forged", svc.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    // The key set is fetched from jwks_uri on first use.
    let bob = issuer::mint(
        &kp,
        &issuer::TokenSpec {
            issuer: cfg.issuer.clone(),
            audience: AUD.into(),
            subject: "bob".into(),
            groups: vec!["approvers".into()],
            email: None,
            client_id: None,
            ttl_s: 600,
        },
    )
    .unwrap();
    let r = http
        .get(format!("{}/api/me", svc.base))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let me: Value = r.json().await.unwrap();
    assert_eq!(me["approver"], true);
    // The page is one self-contained document with the hooks a browser test uses.
    let page = http
        .get(format!("{}/requests/apr_abc", svc.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("data-focus=\"apr_abc\""));
    assert!(page.contains("data-action=\"approve-once\"") && page.contains("data-action=\"deny\""));
    assert!(!page.contains("src=\"http"));
    svc.stop().await;
}

/// `oidc.discovery_url`: the service reads the OpenID configuration there (as a container
/// reaches Keycloak by its service name) although the issuer's own URL answers nothing; the
/// browser is still sent to the document's authorization endpoint (the public one).
#[tokio::test]
async fn login_reads_discovery_from_the_configured_url() {
    let dir = tempfile::tempdir().unwrap();
    let kp = issuer::load_or_create_key(&dir.path().join("idp.pem")).unwrap();
    let (l, a) = listen().await;
    // Port 9 (discard): nothing answers there, so a fetch from the issuer's URL would fail.
    let iss = "http://127.0.0.1:9/realms/demo";
    let internal = format!("http://{a}/realms/demo");
    let discovery = json!({
        "issuer": iss,
        "authorization_endpoint": format!("{iss}/protocol/openid-connect/auth"),
        "token_endpoint": format!("{internal}/protocol/openid-connect/token"),
    });
    let fetched = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = Arc::clone(&fetched);
    let idp = axum::Router::new().route(
        "/realms/demo/.well-known/openid-configuration",
        axum::routing::get(move |uri: axum::http::Uri| async move {
            seen.lock().unwrap().push(uri.to_string());
            axum::Json(discovery)
        }),
    );
    tokio::spawn(async move { axum::serve(l, idp).await.unwrap() });
    let discovery_url = format!("{internal}/.well-known/openid-configuration");
    let cfg = Config::parse(
        &json!({
            "issuer": iss,
            "audiences": [AUD],
            "jwks": issuer::jwks(&kp),
            "approver_groups": ["approvers"],
            "public_url": "http://approvals.test",
            "api_keys": [API_KEY],
            "oidc": {"client_id": "approvals-page", "discovery_url": discovery_url},
        })
        .to_string(),
    )
    .unwrap();
    let svc = start(&cfg, db_path(dir.path()).to_str().unwrap()).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = http
        .get(format!("{}/login", svc.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    assert!(
        loc.starts_with(&format!("{iss}/protocol/openid-connect/auth?")),
        "{loc}"
    );
    assert_eq!(
        fetched.lock().unwrap().as_slice(),
        ["/realms/demo/.well-known/openid-configuration"]
    );
    svc.stop().await;

    // Without it, discovery is read from the issuer's URL: here nothing answers there.
    let mut no_url = cfg.clone();
    no_url.oidc.as_mut().unwrap().discovery_url = None;
    let dir2 = tempfile::tempdir().unwrap();
    let svc = start(&no_url, db_path(dir2.path()).to_str().unwrap()).await;
    let r = http
        .get(format!("{}/login", svc.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 502);
    let body = r.text().await.unwrap();
    assert!(
        body.contains(&format!("{iss}/.well-known/openid-configuration")),
        "{body}"
    );
    svc.stop().await;

    // Only an http(s) URL is taken.
    let err = Config::parse(
        &json!({
            "issuer": iss, "audiences": [AUD], "jwks": {"keys": []}, "approver_groups": ["g"],
            "public_url": "http://h", "api_keys": [API_KEY],
            "oidc": {"client_id": "c", "discovery_url": "keycloak:8080/x"},
        })
        .to_string(),
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("oidc.discovery_url"), "{err:#}");
}
