//! `mcptrail approvals`: the approval service behind the policy action `review`.
//!
//! The filter asks `POST /v1/check` whether a call may go through; people decide on a web
//! page (or through the API) signed in with the issuer. Decisions are kept in a database
//! (SQLite or PostgreSQL) and shipped to the collector as `approval.decided` records on the
//! service's own hash chain. See `docs/approvals.md`.

pub mod api;
pub mod audit;
pub mod auth;
pub mod grants;
pub mod notify;
pub mod store;
pub mod web;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use serde::Deserialize;
use serde_json::Value;
use tokio::net::TcpListener;

use grants::Limits;

/// The service's configuration file (JSON). Unknown keys are errors.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub issuer: String,
    pub audiences: Vec<String>,
    #[serde(default)]
    pub jwks: Option<Value>,
    #[serde(default)]
    pub jwks_uri: Option<String>,
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// Claim naming the approver; must match the filter's `claims.subject`, since nobody
    /// decides a request whose caller has the same `iss` and subject.
    #[serde(default = "default_subject_claim")]
    pub subject_claim: String,
    pub approver_groups: Vec<String>,
    pub public_url: String,
    pub api_keys: Vec<String>,
    #[serde(default = "default_grant_ttl_s")]
    pub grant_ttl_s: i64,
    #[serde(default = "default_window_s_max")]
    pub window_s_max: i64,
    #[serde(default)]
    pub notify_url: Option<String>,
    #[serde(default)]
    pub audit: Option<AuditConfig>,
    #[serde(default)]
    pub oidc: Option<OidcConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// The collector's ingest URL (NDJSON is POSTed there).
    pub url: String,
    /// Base64 HMAC key of the chain's MACs (as `mcptrail verify --hmac-key` takes it).
    #[serde(default)]
    pub hmac_key: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    pub client_id: String,
    #[serde(default)]
    pub client_secret: Option<String>,
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// RFC 8707 resource indicator asked for; defaults to `public_url`.
    #[serde(default)]
    pub resource: Option<String>,
    /// Where the OpenID configuration is fetched; defaults to
    /// `{issuer}/.well-known/openid-configuration`. For a service that cannot reach the
    /// issuer's public URL (a container whose issuer is `http://localhost:8080/...` for the
    /// browser); the browser is still sent to the document's `authorization_endpoint`.
    #[serde(default)]
    pub discovery_url: Option<String>,
}

impl OidcConfig {
    /// The OpenID configuration's URL for `issuer`.
    pub fn discovery_url(&self, issuer: &str) -> String {
        self.discovery_url.clone().unwrap_or_else(|| {
            format!(
                "{}/.well-known/openid-configuration",
                issuer.trim_end_matches('/')
            )
        })
    }
}

fn default_groups_claim() -> String {
    "groups".into()
}
fn default_subject_claim() -> String {
    "sub".into()
}
fn default_grant_ttl_s() -> i64 {
    900
}
fn default_window_s_max() -> i64 {
    86400
}
fn default_scopes() -> Vec<String> {
    vec!["openid".into(), "profile".into()]
}

impl Config {
    /// Parses and checks a configuration.
    pub fn parse(text: &str) -> anyhow::Result<Config> {
        let mut c: Config = serde_json::from_str(text).context("approvals configuration")?;
        c.public_url = c.public_url.trim_end_matches('/').to_string();
        if c.issuer.is_empty() {
            bail!("`issuer` must not be empty");
        }
        if c.audiences.is_empty() {
            bail!("`audiences` must name at least one audience");
        }
        match (&c.jwks, &c.jwks_uri) {
            (Some(_), Some(_)) => bail!("give `jwks` or `jwks_uri`, not both"),
            (None, None) => bail!("`jwks` or `jwks_uri` is required"),
            _ => {}
        }
        if c.approver_groups.is_empty() {
            bail!("`approver_groups` must name at least one group");
        }
        if c.api_keys.is_empty() || c.api_keys.iter().any(|k| k.len() < 16) {
            bail!("`api_keys` must hold at least one key, each of 16 characters or more");
        }
        if !(c.public_url.starts_with("http://") || c.public_url.starts_with("https://")) {
            bail!("`public_url` must be an http(s) URL");
        }
        if c.grant_ttl_s < 1 {
            bail!("`grant_ttl_s` must be at least 1");
        }
        if c.window_s_max < 1 {
            bail!("`window_s_max` must be at least 1");
        }
        if let Some(u) = c.oidc.as_ref().and_then(|o| o.discovery_url.as_deref()) {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                bail!("`oidc.discovery_url` must be an http(s) URL");
            }
        }
        if let Some(a) = &c.audit {
            if let Some(k) = &a.hmac_key {
                crate::verify::decode_key(k).context("`audit.hmac_key`")?;
            }
        }
        Ok(c)
    }

    pub fn limits(&self) -> Limits {
        Limits {
            grant_ttl_s: self.grant_ttl_s,
            window_s_max: self.window_s_max,
        }
    }
}

/// Seconds since the Unix epoch (the store keeps seconds).
pub fn now_s() -> i64 {
    i64::try_from(crate::records::now_ms() / 1000).unwrap_or(i64::MAX)
}

/// `n` random bytes from the OS, base64url without padding.
pub fn random_token(n: usize) -> String {
    use base64::Engine as _;
    use rand_core::RngCore as _;
    let mut b = vec![0u8; n];
    rand_core::OsRng.fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// A new request id: `apr_` and 22 base64url characters (128 random bits).
pub fn new_request_id() -> String {
    format!("apr_{}", random_token(16))
}

/// Everything the handlers share.
pub struct App {
    pub config: Config,
    pub store: store::Store,
    pub keys: auth::Keys,
    pub audit: Option<Arc<audit::Auditor>>,
    pub http: reqwest::Client,
}

pub type Shared = Arc<App>;

/// A running service: its routes, and what must be done when it stops.
pub struct Service {
    pub app: Shared,
    shipper: Option<tokio::task::JoinHandle<()>>,
}

impl Service {
    /// Opens the database, compiles the keys and starts the audit shipper.
    pub async fn start(config: Config, db: &str) -> anyhow::Result<Service> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            // Redirects are not followed: a JWKS, token or collector URL is taken as given.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let store = store::Store::open(db).await?;
        let keys = auth::Keys::new(&config, http.clone())?;
        let (audit, shipper) = match &config.audit {
            Some(a) => {
                let auditor = Arc::new(audit::Auditor::start(a, store.clone()).await?);
                let task = tokio::spawn(audit::ship(
                    Arc::clone(&auditor),
                    http.clone(),
                    a.url.clone(),
                ));
                (Some(auditor), Some(task))
            }
            None => (None, None),
        };
        Ok(Service {
            app: Arc::new(App {
                config,
                store,
                keys,
                audit,
                http,
            }),
            shipper,
        })
    }

    pub fn router(&self) -> axum::Router {
        api::router(Arc::clone(&self.app)).merge(web::router(Arc::clone(&self.app)))
    }

    /// Ends the audit stream with `audit.closed` and gives the shipper up to `wait` to
    /// deliver what is pending; whatever is left stays in the outbox for the next start.
    pub async fn shutdown(mut self, wait: Duration) -> anyhow::Result<()> {
        if let Some(a) = &self.app.audit {
            a.close().await?;
            let deadline = tokio::time::Instant::now() + wait;
            while tokio::time::Instant::now() < deadline {
                if self.app.store.outbox_unshipped_count().await? == 0 {
                    break;
                }
                a.wake();
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        if let Some(t) = self.shipper.take() {
            t.abort();
        }
        self.app.store.close().await;
        Ok(())
    }
}

/// `mcptrail approvals`: serves until SIGINT/SIGTERM, then closes its audit stream.
pub async fn run(listener: TcpListener, config: Config, db: &str) -> anyhow::Result<()> {
    let service = Service::start(config, db).await?;
    eprintln!(
        "approvals: listening on http://{} (database {})",
        listener.local_addr()?,
        store::redact(db)
    );
    axum::serve(listener, service.router())
        .with_graceful_shutdown(stop_signal())
        .await?;
    service.shutdown(Duration::from_secs(5)).await
}

async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
