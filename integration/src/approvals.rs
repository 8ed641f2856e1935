//! The approval service (`mcptrail approvals`) in this process, on a fixed address so it can
//! be stopped and started again on the same database (state must survive), with Envoy's
//! `approvals` cluster pointing at it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mcptrail_cli::approvals::{Config, Service};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::envoy::Upstream;

/// The API key the filter sends in tests and the local stack.
pub const API_KEY: &str = "dev-filter-key-0123456789";

/// A running service and what it needs to start again.
pub struct Approvals {
    pub addr: SocketAddr,
    /// Its page (`public_url`).
    pub url: String,
    config: Value,
    db: PathBuf,
    running: Option<(Service, CancellationToken, tokio::task::JoinHandle<()>)>,
}

impl Approvals {
    /// Binds `listen` (port 0: a free one) and serves `config` on the SQLite file or
    /// `postgres://` URL `db`. `public_url` is set to the bound address unless given.
    pub async fn start(listen: SocketAddr, mut config: Value, db: &Path) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        if config.get("public_url").is_none() {
            config["public_url"] = json!(format!("http://{addr}"));
        }
        let url = config["public_url"]
            .as_str()
            .unwrap_or_default()
            .trim_end_matches('/')
            .to_string();
        let mut a = Approvals {
            addr,
            url,
            config,
            db: db.to_path_buf(),
            running: None,
        };
        a.serve(listener).await?;
        Ok(a)
    }

    async fn serve(&mut self, listener: TcpListener) -> anyhow::Result<()> {
        let config = Config::parse(&self.config.to_string())?;
        let service = Service::start(config, &self.db.to_string_lossy()).await?;
        let router = service.router();
        let stop = CancellationToken::new();
        let until = stop.clone();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async move { until.cancelled().await })
                .await;
        });
        self.running = Some((service, stop, task));
        Ok(())
    }

    /// Stops serving (connections close, the audit stream ends with `audit.closed`).
    pub async fn stop(&mut self) {
        if let Some((service, stop, task)) = self.running.take() {
            stop.cancel();
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                abort.abort();
            }
            let _ = service.shutdown(Duration::from_secs(5)).await;
        }
    }

    /// Serves again on the same address and database.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop().await;
        let listener = TcpListener::bind(self.addr).await?;
        self.serve(listener).await
    }

    /// The Envoy cluster that reaches it.
    pub fn cluster(&self, name: &str) -> Upstream {
        Upstream::one(name, self.addr)
    }

    /// The plugin's `approvals` section for that cluster.
    pub fn plugin_section(cluster: &str) -> Value {
        json!({
            "cluster": cluster,
            "authority": "approvals",
            "path": "/v1/check",
            "headers": { "x-api-key": API_KEY },
            "timeout_ms": 2000,
        })
    }
}

/// A service configuration trusting `issuer` (keys at its JWKS) for tokens with audience
/// `audience`, approvers in `admins`, decisions shipped to `collector` (its `/ingest`).
pub fn config(issuer: &str, audience: &str, collector: SocketAddr, hmac_key_b64: &str) -> Value {
    json!({
        "issuer": issuer,
        "audiences": [audience],
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "approver_groups": ["admins"],
        "api_keys": [API_KEY],
        "grant_ttl_s": 900,
        "audit": { "url": format!("http://{collector}/ingest"), "hmac_key": hmac_key_b64 },
    })
}
