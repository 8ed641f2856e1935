//! The development authorization server (`authz/server.mjs`, oidc-provider; `make setup`
//! installs it) run as a child process (`process::Server`) on a kernel-chosen loopback port:
//! its own process group, waited for until it listens (it listens once the provider is
//! built), stopped by PID on drop (its log printed if a test panicked).

use std::net::SocketAddr;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::bail;

use crate::envoy::{loopback, repo_root, tools_dir};
use crate::process::{free_port, Server};

/// The resource the local stack's MCP endpoint is (`make run`).
pub const MCP_RESOURCE: &str = "http://127.0.0.1:10000/mcp";
/// The pre-registered public client of the approvals page.
pub const APPROVALS_CLIENT_ID: &str = "mcptrail-approvals";

/// How to start the server.
#[derive(Debug, Clone, Default)]
pub struct AuthzSpec {
    /// The RSA private key (PEM); `None`: a new one made by `mcptrail issuer`'s
    /// `load_or_create_key` in a temporary directory.
    pub key: Option<PathBuf>,
    /// `--approvals-redirect` (the server's default when `None`).
    pub approvals_redirect: Option<String>,
    /// `--resources` (`*` or comma-separated URLs; the server's default, any, when `None`).
    pub resources: Option<String>,
    /// The port (a free one when `None`): the local stack's issuer URL is fixed.
    pub port: Option<u16>,
    /// `--cimd-loopback-ca`: the CA (PEM) of https servers on loopback whose client ID
    /// metadata documents the server may fetch (tests); `None`: documents on loopback refused.
    pub cimd_loopback_ca: Option<PathBuf>,
}

/// A running dev authorization server.
pub struct Authz {
    /// `http://127.0.0.1:PORT`, its `iss`.
    pub issuer: String,
    pub addr: SocketAddr,
    /// The signing key file.
    pub key_path: PathBuf,
    log_path: PathBuf,
    server: Option<Server>,
    _dir: tempfile::TempDir,
}

/// The Node.js that runs it: `$MCPTRAIL_AUTHZ_NODE`, or the Node 22 `make setup` installs.
pub fn node_bin() -> PathBuf {
    std::env::var_os("MCPTRAIL_AUTHZ_NODE")
        .map(PathBuf::from)
        .unwrap_or_else(|| tools_dir().join("conformance/node22/node_modules/.bin/node"))
}

/// `authz/server.mjs`.
pub fn server_script() -> PathBuf {
    repo_root().join("authz/server.mjs")
}

impl Authz {
    /// Starts with a fresh key and the defaults.
    pub fn start() -> anyhow::Result<Authz> {
        Self::start_with(&AuthzSpec::default())
    }

    /// Starts as `spec` says and waits (30 s at most) until discovery answers. Fails, naming
    /// `make setup`, when Node or the server's packages are not installed.
    pub fn start_with(spec: &AuthzSpec) -> anyhow::Result<Authz> {
        let node = node_bin();
        if !node.exists() {
            bail!(
                "Node.js 22 not found at {}: run `make setup`",
                node.display()
            );
        }
        let script = server_script();
        let package = repo_root().join("authz/node_modules/oidc-provider/package.json");
        if !package.exists() {
            bail!(
                "oidc-provider is not installed ({} missing): run `make setup`",
                package.display()
            );
        }
        let dir = tempfile::tempdir()?;
        let key_path = match &spec.key {
            Some(k) => k.clone(),
            None => {
                let k = dir.path().join("issuer-key.pem");
                mcptrail_cli::issuer::load_or_create_key(&k)?;
                k
            }
        };
        let port = match spec.port {
            Some(p) => p,
            None => free_port()?,
        };
        let addr = loopback(port);
        let issuer = format!("http://{addr}");
        let log_path = dir.path().join("authz.log");
        let log = std::fs::File::create(&log_path)?;
        let mut cmd = Command::new(&node);
        cmd.arg(&script)
            .arg("--port")
            .arg(port.to_string())
            .arg("--key")
            .arg(&key_path)
            .arg("--issuer")
            .arg(&issuer)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Its own process group: a terminal's Ctrl-C is the harness's to handle.
            .process_group(0);
        if let Some(r) = &spec.approvals_redirect {
            cmd.arg("--approvals-redirect").arg(r);
        }
        if let Some(r) = &spec.resources {
            cmd.arg("--resources").arg(r);
        }
        if let Some(ca) = &spec.cimd_loopback_ca {
            cmd.arg("--cimd-loopback-ca").arg(ca);
        }
        let what = format!("{} {}", node.display(), script.display());
        let server =
            Server::start(&mut cmd, addr, &what, Duration::from_secs(30)).map_err(|e| {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                anyhow::anyhow!("the authorization server did not start: {e:#}\n{log}")
            })?;
        Ok(Authz {
            issuer,
            addr,
            key_path,
            log_path,
            server: Some(server),
            _dir: dir,
        })
    }

    /// `issuer` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.server.as_ref().map(Server::pid)
    }

    /// What the server printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Stops it (SIGKILL to its PID) and waits for it.
    pub fn stop(&mut self) {
        self.server = None;
    }
}

impl Drop for Authz {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!(
                "----- authorization server log ({}) -----\n{}----- end of its log -----",
                self.log_path.display(),
                self.log()
            );
        }
    }
}
