//! Stock MCP clients sign in by the MCP authorization flow (issue 20): the official Python SDK
//! (`mcp`, `OAuthClientProvider`) and the official TypeScript SDK (`@modelcontextprotocol/sdk`,
//! `StreamableHTTPClientTransport` with an `OAuthClientProvider`) are pointed at Envoy with the
//! filter, with no token. Each meets the filter's 401, follows its resource metadata to the dev
//! authorization server (`authz/`, oidc-provider), registers dynamically, has a user signed in
//! (the sign-in and consent forms driven over HTTP as a browser would, by the client scripts in
//! `integration/py/oauth_client.py` and `integration/js/oauth_client.mjs`), exchanges the code
//! (PKCE S256, `resource` = the MCP URL) and calls a tool; the records carry the signed-in
//! user and the registered client.
//!
//! Bad input, the filter's side: a token the server issued for another resource, an expired
//! one, a refresh token handed to the filter: 401 with `error="invalid_token"` in the
//! challenge, the code in the body and an `auth.denied` record with the code. The server's side of a rotated-away refresh token is checked with a stock
//! client's own refresh token here; a non-loopback registration (`invalid_redirect_uri`) and a
//! code replay (`invalid_grant`) are the server's alone and tested in `tests/authz.rs`.
//!
//! No skipping: when Node 22, oidc-provider, the TypeScript SDK (`.tools/tsclient`) or the
//! Python SDK is missing (`make setup` installs them all), these tests fail.

use std::path::PathBuf;
use std::process::Command;

use jwt_simple::prelude::*;
use mcptrail_integration::authz::{node_bin, Authz, AuthzSpec};
use mcptrail_integration::envoy::{loopback, repo_root, tools_dir, Envoy, EnvoySpec, Upstream};
use mcptrail_integration::process::free_port;
use mcptrail_integration::signin::{self, Outcome};
use mcptrail_integration::{base_plugin_config, demo, Collector, DemoServer};
use serde_json::{json, Value};

/// What the filter's audience is not: a resource elsewhere (nothing listens on port 9).
const OTHER_RESOURCE: &str = "http://127.0.0.1:9/other";

/// The dev authorization server, Envoy (2 workers) with the filter trusting it, the demo
/// server, the collector.
struct Rig {
    // Field order is drop order: Envoy first, so its log is printed before the rest goes.
    envoy: Envoy,
    authz: Authz,
    collector: Collector,
    _server: DemoServer,
    /// `http://127.0.0.1:PORT/mcp`: the MCP URL, the resource the filter's metadata names
    /// (it derives it from the request's authority) and the filter's audience.
    resource: String,
}

impl Rig {
    async fn start() -> Rig {
        let authz = tokio::task::block_in_place(|| Authz::start_with(&AuthzSpec::default()))
            .unwrap_or_else(|e| panic!("the dev authorization server did not start: {e:#}"));
        let collector = Collector::start().await.unwrap();
        let server = DemoServer::start(demo::Mode::default()).await.unwrap();
        // The audience must be known before Envoy starts, so the listener gets a fixed port.
        let port = free_port().unwrap();
        let resource = format!("http://127.0.0.1:{port}/mcp");
        let mut cfg = base_plugin_config();
        cfg["auth"] = json!({
            "mode": "required",
            "providers": [{
                "name": "dev",
                "issuer": authz.issuer,
                "audiences": [resource],
                "jwks_uri": authz.url("/.well-known/jwks.json"),
                "jwks_cluster": "authz",
            }],
        });
        let mut spec = EnvoySpec::mcp(cfg, server.addr, collector.addr);
        spec.listen = loopback(port);
        spec.clusters.push(Upstream::one("authz", authz.addr));
        let envoy = tokio::task::block_in_place(|| Envoy::start(&spec, 2)).unwrap();
        assert_eq!(envoy.url(), format!("http://127.0.0.1:{port}"));
        Rig {
            envoy,
            authz,
            collector,
            _server: server,
            resource,
        }
    }

    /// An `initialize` through Envoy with `token` (if any): status, `WWW-Authenticate`, body.
    async fn initialize(&self, token: Option<&str>) -> (u16, String, Value) {
        let mut req = reqwest::Client::new()
            .post(&self.resource)
            .header("accept", "application/json, text/event-stream")
            .json(&json!({
                "jsonrpc": "2.0", "id": 1, "method": "initialize",
                "params": {
                    "protocolVersion": "2025-11-25",
                    "capabilities": {},
                    "clientInfo": { "name": "oauth-clients-test", "version": "0" },
                },
            }));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let www = r
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let text = r.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or_else(|_| json!({ "raw": text }));
        (status, www, body)
    }

    /// Asserts a 401 for `token` whose challenge says `invalid_token` (RFC 6750) and whose
    /// body names `code`, and waits for its `auth.denied` record with `code`; returns that
    /// record.
    async fn refused(&self, token: &str, code: &str) -> Value {
        let before = self.denied(code).len();
        let (status, www, body) = self.initialize(Some(token)).await;
        assert_eq!(status, 401, "{code}: {body}");
        assert_eq!(body["error"], code, "{code}: {body}");
        assert!(www.contains("error=\"invalid_token\""), "{code}: {www}");
        assert!(
            www.contains(&format!(
                "resource_metadata=\"http://{}/.well-known/oauth-protected-resource/mcp\"",
                self.envoy.listen
            )),
            "{code}: {www}"
        );
        let recs = self
            .collector
            .wait_for(&format!("an auth.denied record `{code}`"), |r| {
                self.denied_in(r, code).len() > before
            })
            .await
            .unwrap();
        let rec = self.denied_in(&recs, code).pop().unwrap();
        assert_eq!(rec["identity"], Value::Null, "{rec}");
        // A token that is no JWT names no issuer.
        let issuer = if code == "malformed" {
            Value::Null
        } else {
            json!(self.authz.issuer)
        };
        assert_eq!(rec["auth"]["issuer"], issuer, "{rec}");
        assert_eq!(rec["outcome"]["status"], "denied", "{rec}");
        assert!(!rec.to_string().contains(token), "never the token: {rec}");
        rec
    }

    fn denied(&self, code: &str) -> Vec<Value> {
        self.denied_in(&self.collector.records(), code)
    }

    fn denied_in(&self, recs: &[Value], code: &str) -> Vec<Value> {
        recs.iter()
            .filter(|r| r["kind"] == "auth.denied" && r["auth"]["error"] == code)
            .cloned()
            .collect()
    }

    /// The `command` record of the `echo` call with `text`; asserts it is `sub`'s, in
    /// `groups`, by `client_id`.
    async fn echo_record(&self, text: &str, sub: &str, groups: &[&str], client_id: &str) {
        let recs = self
            .collector
            .wait_for(&format!("{sub}'s echo call"), |r| {
                r.iter().any(|r| is_echo(r, text))
            })
            .await
            .unwrap();
        let rec = recs.iter().find(|r| is_echo(r, text)).unwrap();
        assert_eq!(rec["outcome"]["status"], "ok", "{rec}");
        let id = &rec["identity"];
        assert_eq!(id["sub"], sub, "{rec}");
        assert_eq!(id["iss"], self.authz.issuer, "{rec}");
        assert_eq!(id["email"], format!("{sub}@example.com"), "{rec}");
        assert_eq!(id["groups"], json!(groups), "{rec}");
        assert_eq!(id["client_id"], client_id, "{rec}");
        // The client met the filter's 401 first: no token yet.
        assert!(
            !self.denied_in(&recs, "missing_token").is_empty(),
            "the first, tokenless request is on the record"
        );
        assert!(self.collector.verify().problems.is_empty());
    }

    /// Asserts the authorization server's log shows `client_id`'s registration, `sub`'s
    /// sign-in and consent, and a code exchanged for this resource.
    fn assert_authz_log(&self, client_id: &str, sub: &str) {
        let log = self.authz.log();
        for line in [
            format!("registered client {client_id} "),
            format!("signed in: {sub} (client {client_id})"),
            format!("consent: {sub} allowed client {client_id}"),
            format!(
                "token issued: grant_type=authorization_code client={client_id} resource={}",
                self.resource
            ),
        ] {
            assert!(log.contains(&line), "no `{line}` in the log:\n{log}");
        }
    }
}

fn is_echo(r: &Value, text: &str) -> bool {
    r["kind"] == "command" && r["mcp"]["tool"] == "echo" && r["mcp"]["arguments"]["text"] == text
}

/// Runs a client; its stdout as JSON (fails the test with its output when it fails).
fn run(cmd: &mut Command) -> Value {
    let stdout = mcptrail_integration::process::client_stdout(cmd);
    let out: Value =
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    // What the client did, tokens left out (shown with --nocapture, or on a failure).
    let mut shown = out.clone();
    for k in ["access_token", "refresh_token"] {
        if let Some(v) = shown.get_mut(k) {
            *v = json!(v.as_str().map(|t| format!("({} bytes)", t.len())));
        }
    }
    eprintln!("{shown}");
    out
}

/// What `make setup` installs, or a failure naming it.
fn require(path: PathBuf, what: &str) -> PathBuf {
    assert!(
        path.exists(),
        "{what} not found at {}: run `make setup`",
        path.display()
    );
    path
}

/// Asserts the client's sign-in went through the forms to the callback and returned a
/// registered client id.
fn check_client_output(out: &Value, text: &str) -> String {
    assert_eq!(out["echo"], json!([text]), "{out}");
    assert!(
        out["tools"].as_array().unwrap().contains(&json!("echo")),
        "{out}"
    );
    assert_eq!(
        out["steps"],
        json!(["authorize", "login", "consent", "callback"]),
        "{out}"
    );
    let client_id = out["client_id"].as_str().unwrap_or_default().to_string();
    assert!(!client_id.is_empty(), "a registered client: {out}");
    client_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_signs_in_sam_and_calls_a_tool() {
    let python = require(tools_dir().join("venv/bin/python"), "the Python SDK's venv");
    let rig = Rig::start().await;
    let text = "sam, signed in by the python sdk";
    let out = run(Command::new(python)
        .arg(repo_root().join("integration/py/oauth_client.py"))
        .arg(&rig.resource)
        .args(["--user", "sam", "--text", text]));
    let client_id = check_client_output(&out, text);
    rig.echo_record(text, "sam", &["support"], &client_id).await;
    rig.assert_authz_log(&client_id, "sam");

    // The SDK asked for offline access (the server lists it) and got a refresh token: one
    // use rotates it, and the new access token is the filter's to accept.
    let scope = out["scope"].as_str().unwrap_or_default();
    assert!(scope.split(' ').any(|s| s == "offline_access"), "{out}");
    let rt1 = out["refresh_token"].as_str().expect("a refresh token");
    let http = signin::browser();
    let refresh = |rt: String| {
        let (http, az, client_id) = (&http, &rig.authz, &client_id);
        async move {
            signin::token(
                az,
                http,
                &[
                    ("grant_type", "refresh_token"),
                    ("client_id", client_id),
                    ("refresh_token", &rt),
                ],
            )
            .await
        }
    };
    let (status, fresh) = refresh(rt1.to_string()).await;
    assert_eq!(status, 200, "{fresh}\n{}", rig.authz.log());
    assert_ne!(fresh["refresh_token"].as_str(), Some(rt1), "rotated");
    let at2 = fresh["access_token"].as_str().unwrap();
    let (status, _, body) = rig.initialize(Some(at2)).await;
    assert_eq!(status, 200, "the refreshed token is accepted: {body}");

    // The refresh token rotated away: the server refuses it; handed to the filter as if it
    // were an access token, the filter refuses it (opaque, not a JWT).
    let (status, err) = refresh(rt1.to_string()).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (400, Some("invalid_grant")),
        "{err}"
    );
    assert!(
        rig.authz.log().contains("token refused: invalid_grant"),
        "{}",
        rig.authz.log()
    );
    rig.refused(rt1, "malformed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_sdk_signs_in_alice_and_calls_a_tool() {
    let node = require(node_bin(), "Node.js 22");
    let sdk = tools_dir().join("tsclient");
    require(
        sdk.join("node_modules/@modelcontextprotocol/sdk/package.json"),
        "the TypeScript MCP SDK",
    );
    let rig = Rig::start().await;
    let text = "alice, signed in by the typescript sdk";
    let out = run(Command::new(node)
        .arg(repo_root().join("integration/js/oauth_client.mjs"))
        .arg(&rig.resource)
        .args(["--user", "alice", "--text", text])
        .arg("--sdk")
        .arg(&sdk));
    let client_id = check_client_output(&out, text);
    assert_eq!(out["signed_in_after_401"], true, "{out}");
    assert_eq!(
        out["authorization_request"]["resource"], rig.resource,
        "{out}"
    );
    assert_eq!(
        out["authorization_request"]["code_challenge_method"],
        "S256"
    );
    rig.echo_record(text, "alice", &["eng"], &client_id).await;
    rig.assert_authz_log(&client_id, "alice");
}

/// A token for `now - 300 .. now - 120` (expired beyond the filter's 60 s leeway), signed
/// with the server's key: `mcptrail_cli::issuer::mint` only mints forward in time.
fn expired_token(az: &Authz) -> String {
    let key = mcptrail_cli::issuer::load_or_create_key(&az.key_path).unwrap();
    let mut claims = Claims::with_custom_claims(
        json!({ "groups": ["admins"], "email": "bob@example.com", "client_id": "expired-test" }),
        Duration::from_secs(1),
    )
    .with_issuer(&az.issuer)
    .with_subject("bob");
    let now = Clock::now_since_epoch();
    claims.issued_at = Some(now - Duration::from_secs(300));
    claims.invalid_before = claims.issued_at;
    claims.expires_at = Some(now - Duration::from_secs(120));
    key.sign(claims).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_filter_refuses_tokens_for_another_resource_expired_ones_and_none() {
    let rig = Rig::start().await;

    // No token: the MCP challenge naming the metadata, whose resource is the MCP URL and
    // whose authorization server is the dev issuer.
    let (status, www, _) = rig.initialize(None).await;
    assert_eq!(status, 401);
    let metadata_url = format!(
        "{}/.well-known/oauth-protected-resource/mcp",
        rig.envoy.url()
    );
    assert_eq!(www, format!("Bearer resource_metadata=\"{metadata_url}\""));
    let prm: Value = reqwest::get(&metadata_url)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(prm["resource"], rig.resource, "{prm}");
    assert_eq!(prm["authorization_servers"], json!([rig.authz.issuer]));

    // A token the server really issued (bob signed in, consented) for another resource.
    let http = signin::browser();
    let redirect = format!("http://127.0.0.1:{}/callback", free_port().unwrap());
    let (status, client) = signin::register(&rig.authz, &http, &redirect).await;
    assert_eq!(status, 201, "{client}");
    let client_id = client["client_id"].as_str().unwrap();
    let (verifier, challenge) = signin::pkce();
    let code = signin::code_for(
        &rig.authz,
        &http,
        client_id,
        &redirect,
        &challenge,
        OTHER_RESOURCE,
        "bob",
    )
    .await;
    let (status, tokens) = signin::exchange(
        &rig.authz,
        &http,
        client_id,
        &redirect,
        &code,
        &verifier,
        OTHER_RESOURCE,
    )
    .await;
    assert_eq!(status, 200, "{tokens}");
    let foreign = tokens["access_token"].as_str().unwrap();
    let rec = rig.refused(foreign, "audience_mismatch").await;
    assert!(rec["auth"]["kid"].is_string(), "{rec}");

    // The same user and client, for this resource (no sign-in again: the session holds):
    // accepted. Only the audience differed.
    let (verifier, challenge) = signin::pkce();
    let url = signin::auth_url(
        &rig.authz,
        client_id,
        &redirect,
        &challenge,
        "S256",
        &rig.resource,
    );
    let Outcome::Redirect(to) = signin::drive(&http, &url, &redirect, "nobody").await else {
        panic!("asked to sign in again:\n{}", rig.authz.log());
    };
    let code = signin::param(&to, "code").unwrap();
    let (status, tokens) = signin::exchange(
        &rig.authz,
        &http,
        client_id,
        &redirect,
        &code,
        &verifier,
        &rig.resource,
    )
    .await;
    assert_eq!(status, 200, "{tokens}");
    let (status, _, body) = rig.initialize(tokens["access_token"].as_str()).await;
    assert_eq!(status, 200, "{body}");

    // Expired (beyond the leeway), with the server's own key: refused as expired.
    let expired = expired_token(&rig.authz);
    rig.refused(&expired, "expired").await;

    // Every refusal above is on the record, and nothing reached the server without a token.
    let recs = rig.collector.records();
    for code in ["missing_token", "audience_mismatch", "expired"] {
        assert!(
            !rig.denied_in(&recs, code).is_empty(),
            "no auth.denied `{code}`"
        );
    }
    assert!(rig.collector.verify().problems.is_empty());
}
