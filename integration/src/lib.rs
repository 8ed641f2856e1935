//! End-to-end harness: real Envoy with the built module, the demo MCP server (rmcp),
//! the `mcptrail collect` sink, all on loopback with kernel-chosen ports.

pub mod demo;
pub mod envoy;
pub mod everything;
pub mod scripted;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use envoy::{Envoy, EnvoySpec, Upstream};

/// The HMAC key the tests use (base64 of `secret-key-for-demo-only`).
pub const TEST_HMAC_KEY_B64: &str = "c2VjcmV0LWtleS1mb3ItZGVtby1vbmx5";
pub const TEST_HMAC_KEY: &[u8] = b"secret-key-for-demo-only";

/// A `mcptrail collect` sink running in this process.
pub struct Collector {
    pub addr: SocketAddr,
    pub out: PathBuf,
    _dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl Collector {
    pub async fn start() -> anyhow::Result<Collector> {
        let dir = tempfile::tempdir()?;
        let out = dir.path().join("audit.ndjson");
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let opts = mcptrail_cli::collector::Options {
            out: out.clone(),
            hmac_key: Some(TEST_HMAC_KEY.to_vec()),
            echo: false,
        };
        let app = mcptrail_cli::collector::router(&opts).await?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Collector {
            addr,
            out,
            _dir: dir,
            task,
        })
    }

    /// Every record stored so far, parsed.
    pub fn records(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits until `done` holds for the stored records (10 s at most).
    pub async fn wait_for(
        &self,
        what: &str,
        done: impl Fn(&[Value]) -> bool,
    ) -> anyhow::Result<Vec<Value>> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let recs = self.records();
            if done(&recs) {
                return Ok(recs);
            }
            if Instant::now() > deadline {
                bail!(
                    "timed out waiting for {what}; the collector holds {} records:\n{}",
                    recs.len(),
                    recs.iter()
                        .map(Value::to_string)
                        .collect::<Vec<_>>()
                        .join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Verifies the collected file's chains (with the test key).
    pub fn verify(&self) -> mcptrail_cli::verify::Report {
        match mcptrail_cli::verify::verify_files(Some(TEST_HMAC_KEY.to_vec()), &[&self.out]) {
            Ok(r) => r,
            Err(e) => mcptrail_cli::verify::Report {
                problems: vec![(
                    self.out.display().to_string(),
                    mcptrail::audit::chain::Problem {
                        line: 0,
                        message: e.to_string(),
                    },
                )],
                streams: vec![],
            },
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The demo MCP server running in this process.
pub struct DemoServer {
    pub addr: SocketAddr,
    ct: CancellationToken,
}

impl DemoServer {
    pub async fn start(mode: demo::Mode) -> anyhow::Result<DemoServer> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let ct = CancellationToken::new();
        let child = ct.clone();
        tokio::spawn(async move {
            let _ = demo::serve(listener, mode, child).await;
        });
        Ok(DemoServer { addr, ct })
    }
}

impl Drop for DemoServer {
    fn drop(&mut self) {
        self.ct.cancel();
    }
}

/// A development OIDC issuer in this process: an RS256 key, its JWKS served over HTTP (the
/// key set can be replaced, for rotation), and tokens minted for it.
pub struct DevIssuer {
    pub issuer: String,
    pub addr: SocketAddr,
    pub keys: std::sync::Arc<std::sync::RwLock<Value>>,
    pub key: jwt_simple::prelude::RS256KeyPair,
    _dir: Option<tempfile::TempDir>,
}

impl DevIssuer {
    /// Starts on `listen` with the key in `key_file` (a temporary one when `None`).
    pub async fn start(listen: SocketAddr, key_file: Option<PathBuf>) -> anyhow::Result<DevIssuer> {
        let (dir, path) = match key_file {
            Some(p) => (None, p),
            None => {
                let d = tempfile::tempdir()?;
                let p = d.path().join("issuer-key.pem");
                (Some(d), p)
            }
        };
        let key = mcptrail_cli::issuer::load_or_create_key(&path)?;
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let issuer = format!("http://{addr}");
        let keys = std::sync::Arc::new(std::sync::RwLock::new(mcptrail_cli::issuer::jwks(&key)));
        tokio::spawn(mcptrail_cli::issuer::serve_jwks(
            listener,
            std::sync::Arc::clone(&keys),
            issuer.clone(),
        ));
        Ok(DevIssuer {
            issuer,
            addr,
            keys,
            key,
            _dir: dir,
        })
    }

    /// A token signed with `key` (the issuer's own unless rotating).
    pub fn token_with(
        &self,
        key: &jwt_simple::prelude::RS256KeyPair,
        sub: &str,
        groups: &[&str],
        audience: &str,
        ttl_s: u64,
    ) -> String {
        mcptrail_cli::issuer::mint(
            key,
            &mcptrail_cli::issuer::TokenSpec {
                issuer: self.issuer.clone(),
                audience: audience.into(),
                subject: sub.into(),
                groups: groups.iter().map(|g| g.to_string()).collect(),
                email: Some(format!("{sub}@example.com")),
                client_id: Some("mcptrail-dev".into()),
                ttl_s,
            },
        )
        .unwrap_or_default()
    }

    /// A token for `sub` in `groups`, valid for an hour.
    pub fn token(&self, sub: &str, groups: &[&str], audience: &str) -> String {
        self.token_with(&self.key, sub, groups, audience, 3600)
    }

    /// The `auth` section trusting this issuer for `audience` (keys fetched via `cluster`).
    pub fn auth_config(&self, audience: &str, cluster: &str) -> Value {
        json!({
            "mode": "required",
            "providers": [{
                "name": "dev",
                "issuer": self.issuer,
                "audiences": [audience],
                "jwks_uri": format!("{}/.well-known/jwks.json", self.issuer),
                "jwks_cluster": cluster,
            }],
        })
    }

    /// The Envoy cluster that reaches the JWKS.
    pub fn cluster(&self, name: &str) -> Upstream {
        Upstream {
            name: name.into(),
            endpoints: vec![self.addr],
        }
    }
}

/// The plugin configuration the tests start from.
pub fn base_plugin_config() -> Value {
    json!({
        "audit": {
            "cluster": "audit_collector",
            "authority": "collector",
            "flush_interval_ms": 100,
            "hmac_key": TEST_HMAC_KEY_B64,
        },
        "mcp": { "paths": ["/mcp"] }
    })
}

/// Collector + demo server + Envoy with the filter, wired together.
pub struct Stack {
    // Field order is drop order: Envoy first, so its log is printed before the rest goes.
    pub envoy: Envoy,
    pub server: DemoServer,
    pub collector: Collector,
}

impl Stack {
    /// Starts everything; `plugin_config` replaces the base config when given.
    pub async fn start(mode: demo::Mode, plugin_config: Option<Value>) -> anyhow::Result<Stack> {
        Self::start_with(mode, plugin_config, Vec::new()).await
    }

    /// Like [`Stack::start`], with more Envoy clusters (a JWKS endpoint, ...).
    pub async fn start_with(
        mode: demo::Mode,
        plugin_config: Option<Value>,
        clusters: Vec<Upstream>,
    ) -> anyhow::Result<Stack> {
        let collector = Collector::start().await?;
        let server = DemoServer::start(mode).await?;
        let mut spec = EnvoySpec::new(
            envoy::wasm_module(),
            plugin_config.unwrap_or_else(base_plugin_config),
            Upstream {
                name: "mcp_server".into(),
                endpoints: vec![server.addr],
            },
        );
        spec.clusters.push(Upstream {
            name: "audit_collector".into(),
            endpoints: vec![collector.addr],
        });
        spec.clusters.extend(clusters);
        let envoy = tokio::task::block_in_place(|| Envoy::start(&spec, 1))?;
        Ok(Stack {
            envoy,
            server,
            collector,
        })
    }

    /// The MCP endpoint through Envoy.
    pub fn mcp_url(&self) -> String {
        format!("{}/mcp", self.envoy.url())
    }
}
