//! End-to-end harness: real Envoy with the built module, the demo MCP server (rmcp),
//! the `mcptrail collect` sink, all on loopback with kernel-chosen ports.

pub mod approvals;
pub mod authz;
pub mod browser;
pub mod demo;
pub mod envoy;
pub mod everything;
pub mod process;
pub mod pyserver;
pub mod schema;
pub mod scripted;
pub mod signin;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use envoy::{Envoy, EnvoySpec, Upstream};

/// The HMAC key the tests use (base64 of `secret-key-for-demo-only`).
pub const TEST_HMAC_KEY_B64: &str = "c2VjcmV0LWtleS1mb3ItZGVtby1vbmx5";
pub const TEST_HMAC_KEY: &[u8] = b"secret-key-for-demo-only";

/// A fault the in-process collector can be told to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Behave.
    None,
    /// Answer every ingest with this status, storing nothing.
    Status(u16),
    /// Store the batch, then answer only after this long (beyond `audit.timeout_ms`, the
    /// answer is lost and the batch is sent again).
    Slow(Duration),
}

/// What the collector's fault layer saw.
#[derive(Debug, Default)]
pub struct FaultCounters {
    /// Ingest requests that reached the collector.
    pub requests: AtomicU64,
    /// Requests answered with an injected status.
    pub refused: AtomicU64,
    /// Requests answered late.
    pub slowed: AtomicU64,
}

struct Faults {
    mode: Mutex<Fault>,
    counters: FaultCounters,
}

async fn fault_layer(
    axum::extract::State(faults): axum::extract::State<Arc<Faults>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    if req.method() != axum::http::Method::POST {
        return next.run(req).await;
    }
    faults.counters.requests.fetch_add(1, Ordering::Relaxed);
    let mode = *faults.mode.lock().unwrap_or_else(|e| e.into_inner());
    match mode {
        Fault::None => next.run(req).await,
        Fault::Status(code) => {
            faults.counters.refused.fetch_add(1, Ordering::Relaxed);
            let code = axum::http::StatusCode::from_u16(code)
                .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
            (code, "injected fault\n").into_response()
        }
        Fault::Slow(delay) => {
            let answer = next.run(req).await;
            faults.counters.slowed.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(delay).await;
            answer
        }
    }
}

struct Serving {
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    counters: Arc<mcptrail_cli::collector::Counters>,
}

/// A `mcptrail collect` sink running in this process, with faults on demand (it can answer
/// errors, answer slowly, or be stopped and restarted on the same port).
///
/// Every record it stores is checked against `docs/record.schema.json`: reading the records
/// ([`Collector::records`], [`Collector::wait_for`]) and dropping the collector panic on the
/// first invalid one, naming the line, the record and the schema errors.
pub struct Collector {
    pub addr: SocketAddr,
    pub out: PathBuf,
    faults: Arc<Faults>,
    serving: Mutex<Option<Serving>>,
    /// Counters of the previous runs (before restarts).
    earlier: Mutex<(u64, u64, u64)>,
    /// Lines already checked against the schema.
    checked: Mutex<usize>,
    _dir: tempfile::TempDir,
}

impl Collector {
    pub async fn start() -> anyhow::Result<Collector> {
        let dir = tempfile::tempdir()?;
        let out = dir.path().join("audit.ndjson");
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let faults = Arc::new(Faults {
            mode: Mutex::new(Fault::None),
            counters: FaultCounters::default(),
        });
        let serving = Self::serve(listener, &out, &faults).await?;
        Ok(Collector {
            addr,
            out,
            faults,
            serving: Mutex::new(Some(serving)),
            earlier: Mutex::new((0, 0, 0)),
            checked: Mutex::new(0),
            _dir: dir,
        })
    }

    async fn serve(
        listener: TcpListener,
        out: &std::path::Path,
        faults: &Arc<Faults>,
    ) -> anyhow::Result<Serving> {
        let opts = mcptrail_cli::collector::Options {
            out: out.to_path_buf(),
            hmac_key: Some(TEST_HMAC_KEY.to_vec()),
            echo: false,
        };
        let (app, counters) = mcptrail_cli::collector::router_with_counters(&opts).await?;
        let app = app.layer(axum::middleware::from_fn_with_state(
            Arc::clone(faults),
            fault_layer,
        ));
        let shutdown = CancellationToken::new();
        let until = shutdown.clone();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(until.cancelled_owned())
                .await;
        });
        Ok(Serving {
            shutdown,
            task,
            counters,
        })
    }

    /// Shows `fault` from now on.
    pub fn set_fault(&self, fault: Fault) {
        *self.faults.mode.lock().unwrap_or_else(|e| e.into_inner()) = fault;
    }

    /// What the fault layer saw.
    pub fn fault_counters(&self) -> &FaultCounters {
        &self.faults.counters
    }

    /// `(batches stored, lines stored, duplicate lines acknowledged without storing)`, over
    /// every run of the sink.
    pub fn sink_counters(&self) -> (u64, u64, u64) {
        let e = *self.earlier.lock().unwrap_or_else(|e| e.into_inner());
        let guard = self.serving.lock().unwrap_or_else(|e| e.into_inner());
        let now = guard.as_ref().map_or((0, 0, 0), |s| {
            (
                s.counters.batches.load(Ordering::Relaxed),
                s.counters.stored.load(Ordering::Relaxed),
                s.counters.duplicates.load(Ordering::Relaxed),
            )
        });
        (e.0 + now.0, e.1 + now.1, e.2 + now.2)
    }

    /// Stops listening and closes its connections (new connections are refused), waiting
    /// for requests in progress to end.
    pub async fn stop(&self) {
        let serving = self
            .serving
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(s) = serving {
            {
                let mut e = self.earlier.lock().unwrap_or_else(|e| e.into_inner());
                e.0 += s.counters.batches.load(Ordering::Relaxed);
                e.1 += s.counters.stored.load(Ordering::Relaxed);
                e.2 += s.counters.duplicates.load(Ordering::Relaxed);
            }
            s.shutdown.cancel();
            let mut task = s.task;
            if tokio::time::timeout(Duration::from_secs(5), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
    }

    /// Serves again on the same address, over the same file (as a restarted process would).
    pub async fn restart(&self) -> anyhow::Result<()> {
        self.stop().await;
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.set_reuseaddr(true)?;
        socket.bind(self.addr)?;
        let listener = socket.listen(1024)?;
        let serving = Self::serve(listener, &self.out, &self.faults).await?;
        *self.serving.lock().unwrap_or_else(|e| e.into_inner()) = Some(serving);
        Ok(())
    }

    /// Every record line stored so far.
    pub fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Checks the stored lines not yet checked against the record schema; panics on the
    /// first invalid one.
    fn check_schema(&self, lines: &[String]) {
        let mut checked = self.checked.lock().unwrap_or_else(|e| e.into_inner());
        for (i, line) in lines.iter().enumerate().skip(*checked) {
            if let Err(e) = schema::check_line(line) {
                panic!(
                    "the collector stored a record that does not match docs/record.schema.json \
                     ({} line {}):\n{line}\n{e}",
                    self.out.display(),
                    i + 1
                );
            }
        }
        *checked = (*checked).max(lines.len());
    }

    /// Every record stored so far, parsed (and checked against the schema).
    pub fn records(&self) -> Vec<Value> {
        let lines = self.lines();
        self.check_schema(&lines);
        lines
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits until `done` holds for the stored records (10 s at most).
    pub async fn wait_for(
        &self,
        what: &str,
        done: impl Fn(&[Value]) -> bool,
    ) -> anyhow::Result<Vec<Value>> {
        self.wait_for_within(what, Duration::from_secs(10), done)
            .await
    }

    /// Waits (10 s at most) until `done` holds for the records of several collectors taken
    /// together (the trails of several replicas), and returns them.
    pub async fn wait_for_all(
        trails: &[&Collector],
        what: &str,
        done: impl Fn(&[Value]) -> bool,
    ) -> anyhow::Result<Vec<Value>> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let all: Vec<Value> = trails.iter().flat_map(|t| t.records()).collect();
            if done(&all) {
                return Ok(all);
            }
            if Instant::now() > deadline {
                bail!(
                    "timed out waiting for {what}; the trails hold {} records",
                    all.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `done` holds for the stored records, `limit` at most.
    pub async fn wait_for_within(
        &self,
        what: &str,
        limit: Duration,
        done: impl Fn(&[Value]) -> bool,
    ) -> anyhow::Result<Vec<Value>> {
        let deadline = Instant::now() + limit;
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
                problems: vec![mcptrail::audit::chain::Problem {
                    source: self.out.display().to_string(),
                    line: 0,
                    message: e.to_string(),
                }],
                ..Default::default()
            },
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        if let Some(s) = self
            .serving
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            s.shutdown.cancel();
            s.task.abort();
        }
        // Whatever arrived after the test's last look is checked too.
        if !std::thread::panicking() {
            let lines = self.lines();
            self.check_schema(&lines);
        }
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
        Upstream::one(name, self.addr)
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
        let mut spec = EnvoySpec::mcp(
            plugin_config.unwrap_or_else(base_plugin_config),
            server.addr,
            collector.addr,
        );
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_invalid_record_fails_loudly_with_the_record_and_the_error() {
        let c = Collector::start().await.unwrap();
        let mut chain = mcptrail::audit::chain::Chain::new("00000000000000ab".into(), None);
        let line = chain.seal(r#"{"v":1,"kind":"command","ts":"yesterday"}"#.into());
        let r = reqwest::Client::new()
            .post(format!("http://{}/ingest", c.addr))
            .header("content-type", "application/x-ndjson")
            .body(format!("{line}\n"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            200,
            "the sink stores it; the harness refuses it"
        );
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| c.records()));
        let msg = caught
            .err()
            .and_then(|p| p.downcast::<String>().ok())
            .map(|s| *s)
            .unwrap_or_default();
        assert!(
            msg.contains("does not match docs/record.schema.json"),
            "{msg}"
        );
        assert!(msg.contains("line 1"), "{msg}");
        assert!(msg.contains(&line), "the record is shown: {msg}");
        assert!(msg.contains("at /ts"), "the error names the place: {msg}");
        assert!(msg.contains("\"session\" is a required property"), "{msg}");
        // Dropping it would panic again (as it should); this test is done with it.
        std::mem::forget(c);
    }
}
