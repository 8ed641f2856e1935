//! `make run`: the whole local stack in the foreground. Envoy with the mcptrail filter on a
//! printed port, the demo MCP server behind it, the collector writing `.run/audit.ndjson`,
//! the dev authorization server (`authz/`, oidc-provider: sign-in for MCP clients and the
//! approvals page), and the approval service with a demo `review` rule. Prints how to
//! connect, follows the audit file; Ctrl-C stops all.

use std::io::{BufRead as _, Seek as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use base64::Engine as _;
use mcptrail_integration::approvals::Approvals;
use mcptrail_integration::authz::{Authz, AuthzSpec, APPROVALS_CLIENT_ID};
use mcptrail_integration::demo::Mode;
use mcptrail_integration::envoy::{self, loopback, Envoy, EnvoySpec};
use mcptrail_integration::DemoServer;
use serde_json::json;
use tokio::net::TcpListener;

fn port(var: &str, default: u16) -> anyhow::Result<u16> {
    match std::env::var(var) {
        Ok(v) => v
            .parse()
            .with_context(|| format!("{var}={v} is not a port")),
        Err(_) => Ok(default),
    }
}

/// A random 32-byte key kept in `dir/name` (base64), made on first use.
fn key_file(dir: &Path, name: &str) -> anyhow::Result<String> {
    let path = dir.join(name);
    if let Ok(k) = std::fs::read_to_string(&path) {
        return Ok(k.trim().to_string());
    }
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let b64 = base64::engine::general_purpose::STANDARD.encode(key);
    std::fs::write(&path, &b64)?;
    Ok(b64)
}

/// Prints lines appended to `path`, like `tail -f`.
fn follow(path: PathBuf) {
    std::thread::spawn(move || {
        let mut pos = 0u64;
        loop {
            if let Ok(mut f) = std::fs::File::open(&path) {
                if f.seek(std::io::SeekFrom::Start(pos)).is_ok() {
                    let mut r = std::io::BufReader::new(f);
                    let mut line = String::new();
                    while r.read_line(&mut line).unwrap_or(0) > 0 {
                        if !line.ends_with('\n') {
                            break;
                        }
                        pos += line.len() as u64;
                        print!("audit | {line}");
                        line.clear();
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = envoy::repo_root().join(".run");
    std::fs::create_dir_all(&dir)?;
    let mcp_port = port("MCPTRAIL_PORT", 10000)?;
    let admin_port = port("MCPTRAIL_ADMIN_PORT", 9901)?;
    let issuer_port = port("MCPTRAIL_ISSUER_PORT", 9400)?;
    let audit_file = dir.join("audit.ndjson");
    let key_b64 = key_file(&dir, "hmac-key")?;
    let session_key = key_file(&dir, "session-key")?;
    // Checkpoints signed; the public half is what an auditor verifies with.
    let signing_key = key_file(&dir, "signing-key")?;
    let seed: [u8; 32] = base64::engine::general_purpose::STANDARD
        .decode(&signing_key)?
        .try_into()
        .map_err(|_| anyhow::anyhow!(".run/signing-key is not a 32-byte seed"))?;
    let public = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key();
    std::fs::write(
        dir.join("signing-public.b64"),
        base64::engine::general_purpose::STANDARD.encode(public.as_bytes()),
    )?;

    let approvals_port = port("MCPTRAIL_APPROVALS_PORT", 8787)?;
    let approvals_url = format!("http://127.0.0.1:{approvals_port}");

    // The dev authorization server (its key is kept in .run/ so `mcptrail token` can mint
    // tokens it would have issued: same issuer URL, same key id).
    let key_path = dir.join("issuer-key.pem");
    mcptrail_cli::issuer::load_or_create_key(&key_path)?;
    let authz = tokio::task::block_in_place(|| {
        Authz::start_with(&AuthzSpec {
            key: Some(key_path.clone()),
            approvals_redirect: Some(format!("{approvals_url}/callback")),
            port: Some(issuer_port),
            ..AuthzSpec::default()
        })
    })
    .with_context(|| {
        format!("cannot start the authorization server on port {issuer_port} (set MCPTRAIL_ISSUER_PORT)")
    })?;
    let issuer = authz.issuer.clone();
    let issuer_cluster = mcptrail_integration::envoy::Upstream::one("dev_issuer", authz.addr);
    let audience = format!("http://127.0.0.1:{mcp_port}/mcp");
    // The filter's resource metadata names the URL the client used (scheme and Host of the
    // request: RFC 9728 clients check it), and clients ask for a token for that resource: the
    // endpoint's two loopback spellings are both accepted.
    let audiences = [audience.clone(), format!("http://localhost:{mcp_port}/mcp")];

    // Collector.
    let collector_listener = TcpListener::bind(loopback(0)).await?;
    let collector_addr = collector_listener.local_addr()?;
    let opts = mcptrail_cli::collector::Options {
        out: audit_file.clone(),
        hmac_key: Some(mcptrail_cli::verify::decode_key(&key_b64)?),
        echo: false,
    };
    tokio::spawn(async move { mcptrail_cli::collector::serve(collector_listener, opts).await });

    // Demo MCP server (SSE responses, sessions).
    let server = DemoServer::start(Mode::default()).await?;

    // The approval service: admins approve what the `review` rule holds, on its page.
    let api_key = key_file(&dir, "approvals-api-key")?;
    let approvals_config = json!({
        "issuer": issuer,
        "audiences": [approvals_url],
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "approver_groups": ["admins"],
        "public_url": approvals_url,
        "api_keys": [api_key],
        "audit": { "url": format!("http://{collector_addr}/ingest"), "hmac_key": key_b64 },
        "oidc": { "client_id": APPROVALS_CLIENT_ID },
    });
    let mut approvals = Approvals::start(
        loopback(approvals_port),
        approvals_config,
        &dir.join("approvals.db"),
    )
    .await
    .with_context(|| {
        format!("cannot start the approval service on port {approvals_port} (set MCPTRAIL_APPROVALS_PORT)")
    })?;

    let plugin_config = json!({
        "audit": {
            "cluster": "audit_collector",
            "authority": "collector",
            "flush_interval_ms": 500,
            "hmac_key": key_b64,
            "signing_key": signing_key,
            "checkpoint_interval_s": 30,
        },
        // Session ids sealed (docs/configuration.md): a session is bound to whoever opened it
        // on every worker.
        "mcp": {
            "paths": ["/mcp"],
            "session_keys": [session_key],
            "reject_session_identity_mismatch": true,
        },
        "auth": {
            "mode": "required",
            "providers": [{
                "name": "dev",
                "issuer": issuer,
                "audiences": audiences,
                "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
                "jwks_cluster": "dev_issuer",
            }],
        },
        // A taste of policy: customer records are for the support group, and deleting one
        // needs an admin's approval (docs/approvals.md).
        "policy": { "rules": [
            { "tools": ["get_customer"], "groups": ["support"], "action": "allow" },
            { "tools": ["get_customer"], "action": "deny" },
            { "tools": ["delete_*"], "action": "review" }
        ]},
        "approvals": {
            "cluster": "approvals",
            "authority": "approvals",
            "headers": { "x-api-key": api_key },
        },
    });
    let mut spec = EnvoySpec::mcp(plugin_config, server.addr, collector_addr);
    spec.listen = loopback(mcp_port);
    spec.admin = loopback(admin_port);
    spec.clusters.push(issuer_cluster);
    spec.clusters.push(approvals.cluster("approvals"));
    std::fs::write(dir.join("envoy.yaml"), envoy::render(&spec))?;
    let mut envoy = tokio::task::block_in_place(|| Envoy::start(&spec, 2))?;
    let url = format!("{}/mcp", envoy.url());
    let kp = mcptrail_cli::issuer::load_or_create_key(&key_path)?;
    let token = mcptrail_cli::issuer::mint(
        &kp,
        &mcptrail_cli::issuer::TokenSpec {
            issuer: issuer.clone(),
            audience: audience.clone(),
            subject: "alice".into(),
            groups: vec!["eng".into()],
            email: Some("alice@example.com".into()),
            client_id: Some("mcptrail-dev".into()),
            ttl_s: 3600,
        },
    )?;
    std::fs::write(dir.join("token"), &token)?;
    println!(
        r#"
mcptrail local stack is up.

Connect your MCP client to {url}
and sign in as alice, bob or sam (any password) when it opens the sign-in page.

  MCP endpoint   {url}
  Envoy admin    http://{admin}/stats?filter=wasm
  Sign-in        {iss}   (OAuth 2.1 / OIDC: users alice (eng), bob (admins), sam (support); any password)
  Approvals      {approvals_url}   (admins approve what the review rule holds)
  Audit file     {audit}
  Envoy config   {config}

For scripts and curl, a token for alice (groups: eng) is in .run/token:
  {token}
Mint others:  cargo run -q -p mcptrail-cli -- token --sub sam --groups support
(get_customer is allowed for the support group only)

Try an approval (delete_* needs an admin's approval):
  .tools/venv/bin/python integration/py/approvals_client.py {url} --token "$(cat .run/token)" --tool delete_customer --args '{{"id":"42"}}'
  -> error -32042 with a URL: open it, sign in as bob, press "Approve once" (alice cannot approve);
     run the same command again: it passes, once. Other arguments need their own approval.

Try it:
  .tools/venv/bin/python integration/py/client.py {url} --token "$(cat .run/token)"
  .tools/bin/mcp-inspector --cli {url} --transport http --header "Authorization: Bearer $(cat .run/token)" --method tools/list
  curl -i {url}     # 401 with the MCP challenge
  cargo run -q -p mcptrail-cli -- verify --hmac-key "$(cat .run/hmac-key)" {audit}
  cargo run -q -p mcptrail-cli -- verify --public-key .run/signing-public.b64 {audit}   # without the HMAC key
After Ctrl-C (the stack drains first, so every stream ends closed and signed):
  cargo run -q -p mcptrail-cli -- verify --expect-closed --public-key .run/signing-public.b64 {audit}

Following the audit file (Ctrl-C stops everything):"#,
        admin = envoy.admin,
        iss = issuer,
        audit = audit_file.display(),
        config = dir.join("envoy.yaml").display(),
    );
    follow(audit_file);
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {
                if !envoy.running() {
                    eprintln!("Envoy exited:\n{}", envoy.log());
                    break;
                }
            }
        }
    }
    // The stop that loses nothing (docs/operations.md): drain, let the closes ship, stop.
    eprintln!("stopping: draining the filter first");
    let drained = reqwest::Client::new()
        .post(format!("{}/.well-known/mcptrail/drain", envoy.url()))
        .send()
        .await
        .is_ok_and(|r| r.status().as_u16() == 202);
    if drained {
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    tokio::task::block_in_place(|| envoy.terminate(Duration::from_secs(10)));
    // The approval service closes its own stream and ships it before the collector goes.
    approvals.stop().await;
    drop(server);
    drop(authz);
    Ok(())
}
