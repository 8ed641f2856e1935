//! Envoy configuration rendering (one source for tests, `make run` and the checked-in
//! configs) and a managed Envoy process.

use std::io::Read as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde_json::Value;

/// Where the project's tools live (`make setup` fills it).
pub fn tools_dir() -> PathBuf {
    if let Ok(d) = std::env::var("MCPTRAIL_TOOLS") {
        return PathBuf::from(d);
    }
    repo_root().join(".tools")
}

/// The workspace root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The Envoy binary: `$ENVOY`, or the pinned one in the tool folder.
pub fn envoy_bin() -> PathBuf {
    std::env::var_os("ENVOY")
        .map(PathBuf::from)
        .unwrap_or_else(|| tools_dir().join("bin").join("envoy"))
}

/// The filter module: `$MCPTRAIL_WASM`, or the release build.
pub fn wasm_module() -> PathBuf {
    std::env::var_os("MCPTRAIL_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/wasm32-wasip1/release/mcptrail.wasm"))
}

/// An upstream cluster: a name and `host:port` endpoints.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub name: String,
    pub endpoints: Vec<SocketAddr>,
}

impl Upstream {
    /// A cluster of one endpoint.
    pub fn one(name: &str, addr: SocketAddr) -> Self {
        Self {
            name: name.into(),
            endpoints: vec![addr],
        }
    }
}

/// What a rendered Envoy configuration contains.
#[derive(Debug, Clone)]
pub struct EnvoySpec {
    /// Listener address; port 0 lets the kernel choose (read back from the admin API).
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    pub module: PathBuf,
    /// The plugin configuration (JSON) passed to `on_configure`.
    pub plugin_config: Value,
    /// Where MCP traffic goes.
    pub mcp_upstream: Upstream,
    /// Other clusters (the audit collector, a JWKS endpoint, ...).
    pub clusters: Vec<Upstream>,
    /// Extra HTTP filters placed before mcptrail (YAML list items), e.g. native `jwt_authn`.
    pub extra_filters_yaml: String,
    /// `FAIL_CLOSED`, `FAIL_OPEN` or `FAIL_RELOAD`.
    pub failure_policy: String,
    /// `allow_on_headers_stop_iteration` (true by default); Istio's `WasmPlugin` and Envoy
    /// Gateway cannot set it, so tests run without it too.
    pub stop_iteration: bool,
    /// Without the filter at all (plain Envoy, for comparisons).
    pub without_filter: bool,
    /// Paths Envoy answers itself (`direct_response`), before the upstream route: a fast
    /// upstream for benchmarks, so the filter's cost is not hidden behind a server's.
    pub direct: Vec<Direct>,
    /// `vm_config.vm_id`: another value makes Envoy start another VM.
    pub vm_id: String,
}

/// A `direct_response` route.
#[derive(Debug, Clone)]
pub struct Direct {
    pub path: String,
    pub content_type: String,
    pub body: String,
}

impl EnvoySpec {
    pub fn new(module: PathBuf, plugin_config: Value, mcp_upstream: Upstream) -> Self {
        Self {
            listen: loopback(0),
            admin: loopback(0),
            module,
            plugin_config,
            mcp_upstream,
            clusters: Vec::new(),
            extra_filters_yaml: String::new(),
            failure_policy: "FAIL_CLOSED".into(),
            stop_iteration: true,
            without_filter: false,
            direct: Vec::new(),
            vm_id: "mcptrail".into(),
        }
    }
}

impl EnvoySpec {
    /// The usual wiring: the built module with `plugin_config`, MCP traffic to `mcp_server`
    /// at `mcp`, and the `audit_collector` cluster at `collector`.
    pub fn mcp(plugin_config: Value, mcp: SocketAddr, collector: SocketAddr) -> Self {
        let mut s = Self::new(
            wasm_module(),
            plugin_config,
            Upstream::one("mcp_server", mcp),
        );
        s.clusters.push(Upstream::one("audit_collector", collector));
        s
    }
}

/// `127.0.0.1:port`.
pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn cluster_yaml(u: &Upstream) -> String {
    let mut eps = String::new();
    for e in &u.endpoints {
        eps.push_str(&format!(
            "        - endpoint:\n            address:\n              socket_address: {{ address: {}, port_value: {} }}\n",
            e.ip(),
            e.port()
        ));
    }
    format!(
        "  - name: {name}\n    type: STATIC\n    connect_timeout: 1s\n    load_assignment:\n      cluster_name: {name}\n      endpoints:\n      - lb_endpoints:\n{eps}",
        name = u.name
    )
}

fn direct_routes(direct: &[Direct]) -> String {
    let mut out = String::new();
    for d in direct {
        // JSON strings are valid YAML scalars, so quoting stays exact.
        let q = |v: &str| serde_json::to_string(v).unwrap_or_default();
        out.push_str(&format!(
            "              - match: {{ path: {path} }}\n                direct_response:\n                  status: 200\n                  body: {{ inline_string: {body} }}\n                response_headers_to_add:\n                - header: {{ key: content-type, value: {ct} }}\n",
            path = q(&d.path),
            body = q(&d.body),
            ct = q(&d.content_type),
        ));
    }
    out
}

/// Renders an Envoy bootstrap (YAML).
pub fn render(spec: &EnvoySpec) -> String {
    // JSON is valid YAML; embedding the plugin config as a JSON string keeps quoting exact.
    let plugin_config = serde_json::to_string(&spec.plugin_config.to_string()).unwrap_or_default();
    let module = serde_json::to_string(&spec.module.display().to_string()).unwrap_or_default();
    let wasm_filter = if spec.without_filter {
        String::new()
    } else {
        format!(
            r#"          - name: envoy.filters.http.wasm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: mcptrail
                root_id: mcptrail
                {stop_iteration}
                failure_policy: {failure_policy}
                vm_config:
                  vm_id: {vm_id}
                  runtime: envoy.wasm.runtime.v8
                  code:
                    local:
                      filename: {module}
                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: {plugin_config}
"#,
            failure_policy = spec.failure_policy,
            vm_id = spec.vm_id,
            stop_iteration = if spec.stop_iteration {
                "# Body callbacks also while the headers wait for keys (Envoy >= 1.35).\n                allow_on_headers_stop_iteration: true"
            } else {
                "# allow_on_headers_stop_iteration unset, as Istio and Envoy Gateway leave it."
            },
        )
    };
    let mut clusters = cluster_yaml(&spec.mcp_upstream);
    for c in &spec.clusters {
        clusters.push_str(&cluster_yaml(c));
    }
    format!(
        r#"# Rendered by mcptrail-integration (integration/src/envoy.rs).
admin:
  address:
    socket_address: {{ address: {admin_ip}, port_value: {admin_port} }}
static_resources:
  listeners:
  - name: mcp
    address:
      socket_address: {{ address: {ip}, port_value: {port} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: mcp
          codec_type: AUTO
          # SSE responses can stay open for long; no idle cut while events flow.
          stream_idle_timeout: 300s
          route_config:
            name: mcp
            # Benchmarks answer bodies up to 1 MiB from Envoy itself (direct_response).
            max_direct_response_body_size_bytes: 1048576
            virtual_hosts:
            - name: mcp
              domains: ["*"]
              routes:
{direct}              - name: mcp
                match: {{ prefix: "/" }}
                route:
                  cluster: {mcp_cluster}
                  timeout: 0s
          http_filters:
{extra}{wasm_filter}          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
{clusters}"#,
        admin_ip = spec.admin.ip(),
        admin_port = spec.admin.port(),
        ip = spec.listen.ip(),
        port = spec.listen.port(),
        mcp_cluster = spec.mcp_upstream.name,
        extra = spec.extra_filters_yaml,
        direct = direct_routes(&spec.direct),
    )
}

/// The same configuration with the listener served over LDS from a file (`lds.yaml` in
/// `dir`), so a test can reconfigure it under traffic as a control plane would: the bootstrap,
/// and the listener resource file.
pub fn render_lds(spec: &EnvoySpec, dir: &Path) -> (String, String) {
    let full = render(spec);
    let (head, rest) = full
        .split_once("static_resources:\n  listeners:\n")
        .unwrap_or((&full, ""));
    let (listener, clusters) = rest.split_once("  clusters:\n").unwrap_or((rest, ""));
    let mut resource = String::from("resources:\n");
    for (i, line) in listener.lines().enumerate() {
        let line = line.strip_prefix("  ").unwrap_or(line);
        if i == 0 {
            resource
                .push_str("- \"@type\": type.googleapis.com/envoy.config.listener.v3.Listener\n  ");
            resource.push_str(line.trim_start_matches("- "));
        } else {
            resource.push_str(line);
        }
        resource.push('\n');
    }
    let q = |p: &Path| serde_json::to_string(&p.display().to_string()).unwrap_or_default();
    let bootstrap = format!(
        "{head}node:\n  id: mcptrail-test\n  cluster: mcptrail-test\ndynamic_resources:\n  lds_config:\n    resource_api_version: V3\n    path_config_source:\n      path: {}\n      watched_directory:\n        path: {}\nstatic_resources:\n  clusters:\n{clusters}",
        q(&dir.join("lds.yaml")),
        q(dir)
    );
    (bootstrap, resource)
}

/// A running Envoy. Stopped on drop; its log is printed if the thread is panicking
/// (a failed test), so failures explain themselves.
pub struct Envoy {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub admin: SocketAddr,
    pub listen: SocketAddr,
    pub log_path: PathBuf,
}

impl Envoy {
    /// Starts Envoy with a rendered config and waits until the listener is up.
    pub fn start(spec: &EnvoySpec, concurrency: u32) -> anyhow::Result<Envoy> {
        Self::start_yaml(&render(spec), concurrency)
    }

    /// Starts Envoy with its listener served over LDS from a file (see [`render_lds`]);
    /// [`Envoy::update_lds`] replaces it. `spec.listen` needs a fixed port (an update keeps
    /// the address). Listeners drain for `drain_s` after an update.
    pub fn start_lds(spec: &EnvoySpec, concurrency: u32, drain_s: u32) -> anyhow::Result<Envoy> {
        let dir = tempfile::tempdir()?;
        let (bootstrap, listener) = render_lds(spec, dir.path());
        std::fs::write(dir.path().join("lds.yaml"), listener)?;
        Self::start_in(
            dir,
            &bootstrap,
            concurrency,
            &["--drain-time-s", &drain_s.to_string()],
        )
    }

    /// Serves `spec`'s listener instead (written aside, then moved into place, so Envoy reads
    /// it whole).
    pub fn update_lds(&self, spec: &EnvoySpec) -> anyhow::Result<()> {
        let (_, listener) = render_lds(spec, self.dir.path());
        let tmp = self.dir.path().join("lds.yaml.next");
        std::fs::write(&tmp, listener)?;
        std::fs::rename(&tmp, self.dir.path().join("lds.yaml"))?;
        Ok(())
    }

    /// Starts Envoy with a configuration given as text (a checked-in file, say) and waits
    /// until its first listener is up. Admin and listener addresses are read back, so the
    /// configuration may use port 0.
    pub fn start_yaml(config: &str, concurrency: u32) -> anyhow::Result<Envoy> {
        Self::start_in(tempfile::tempdir()?, config, concurrency, &[])
    }

    fn start_in(
        dir: tempfile::TempDir,
        config: &str,
        concurrency: u32,
        extra_args: &[&str],
    ) -> anyhow::Result<Envoy> {
        let bin = envoy_bin();
        if !bin.exists() {
            bail!(
                "Envoy not found at {} (run `make setup`, or set ENVOY)",
                bin.display()
            );
        }
        let config_path = dir.path().join("envoy.yaml");
        std::fs::write(&config_path, config)?;
        let log_path = dir.path().join("envoy.log");
        let admin_file = dir.path().join("admin.txt");
        let child = Command::new(&bin)
            .arg("-c")
            .arg(&config_path)
            .args(["--concurrency", &concurrency.to_string()])
            .arg("--disable-hot-restart")
            .args(["--log-level", "info"])
            // The log file is flushed every 10 s by default; tests read it much sooner.
            .args(["--file-flush-interval-msec", "100"])
            .arg("--log-path")
            .arg(&log_path)
            .arg("--admin-address-path")
            .arg(&admin_file)
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let mut envoy = Envoy {
            child: Some(child),
            dir,
            admin: loopback(0),
            listen: loopback(0),
            log_path,
        };
        envoy.wait_ready(&admin_file)?;
        Ok(envoy)
    }

    fn wait_ready(&mut self, admin_file: &Path) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    bail!("Envoy exited during start ({status}):\n{}", self.log());
                }
            }
            if Instant::now() > deadline {
                bail!("Envoy did not become ready in 30s:\n{}", self.log());
            }
            if let Ok(addr) = std::fs::read_to_string(admin_file) {
                if let Ok(admin) = addr.trim().parse::<SocketAddr>() {
                    self.admin = admin;
                    if let Ok(listen) = self.listener_address() {
                        self.listen = listen;
                        if self.admin_get("/ready").is_ok_and(|b| b.contains("LIVE")) {
                            return Ok(());
                        }
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// One request to the admin API (blocking, tiny HTTP/1.1 client: no extra runtime
    /// needed); the raw answer.
    fn admin_request(&self, method: &str, path: &str) -> anyhow::Result<String> {
        use std::io::Write as _;
        let mut s = std::net::TcpStream::connect_timeout(&self.admin, Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: admin\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    }

    /// GET on the admin API; the body of a 200.
    pub fn admin_get(&self, path: &str) -> anyhow::Result<String> {
        let out = self.admin_request("GET", path)?;
        let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
        if !head.starts_with("HTTP/1.1 200") {
            bail!("admin {path}: {head}");
        }
        if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            return Ok(dechunk(body));
        }
        Ok(body.to_string())
    }

    fn listener_address(&self) -> anyhow::Result<SocketAddr> {
        let body = self.admin_get("/listeners?format=json")?;
        let v: Value = serde_json::from_str(&body)?;
        let sa = &v["listener_statuses"][0]["local_address"]["socket_address"];
        let ip = sa["address"].as_str().context("no listener address")?;
        let port = sa["port_value"].as_u64().context("no listener port")?;
        if port == 0 {
            bail!("listener not bound yet");
        }
        Ok(SocketAddr::new(ip.parse()?, port as u16))
    }

    /// A counter or gauge from `/stats`, if present.
    pub fn stat(&self, name: &str) -> Option<u64> {
        let body = self.admin_get(&format!("/stats?filter=^{name}$")).ok()?;
        body.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .and_then(|v| v.trim().parse().ok())
    }

    /// The Envoy process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `(VmRSS, VmHWM)` of the Envoy process in KiB: its memory now and at its peak.
    pub fn memory_kib(&self) -> (u64, u64) {
        let status = self
            .pid()
            .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
            .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.listen)
    }

    /// Envoy's log so far, without the start-up inventory of extensions.
    pub fn log(&self) -> String {
        let all = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = all
            .lines()
            .filter(|l| !l.contains("server.cc:467]") && !l.contains("server.cc:547]"))
            .collect();
        // The end is what explains a failure; cap what a test prints.
        lines[lines.len().saturating_sub(300)..].join("\n")
    }

    /// Sends SIGTERM (Envoy's stop) and waits up to `within` for the process to exit;
    /// returns how long it took, or `None` if it was still running (then it is killed).
    pub fn terminate(&mut self, within: Duration) -> Option<Duration> {
        let child = self.child.as_mut()?;
        let started = Instant::now();
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        while started.elapsed() < within {
            if child.try_wait().ok().flatten().is_some() {
                self.child = None;
                return Some(started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.stop();
        None
    }

    /// POST on the admin API, e.g. `/drain_listeners?graceful`; the raw answer.
    pub fn admin_post(&self, path: &str) -> anyhow::Result<String> {
        self.admin_request("POST", path)
    }

    /// Stops Envoy and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!(
                "----- Envoy log ({}) -----\n{}\n----- end of Envoy log -----",
                self.log_path.display(),
                self.log()
            );
        }
    }
}

/// Decodes an HTTP/1.1 chunked body.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// `envoy --mode validate -c FILE` (also runs the filter's `on_configure`).
pub fn validate(config_path: &Path) -> anyhow::Result<String> {
    let out = Command::new(envoy_bin())
        .args([
            "--mode",
            "validate",
            "--disable-hot-restart",
            "-l",
            "warn",
            "-c",
        ])
        .arg(config_path)
        .output()
        .context("cannot run envoy")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        bail!("{text}")
    }
}
