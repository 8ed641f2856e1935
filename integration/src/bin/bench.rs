//! `make bench`: the same MCP workloads through plain Envoy, Envoy's native `jwt_authn`
//! (default, and with its JWT cache), and mcptrail at increasing depth, in one run, on
//! loopback; load from `wrk` (HTTP/1.1) and `h2load` (h2c), Debian's packages.
//!
//! Envoy answers the MCP calls itself (`direct_response`), so the upstream costs nothing and
//! what differs between variants is the filters; one row puts a real HTTP hop behind it (a
//! second, filterless Envoy answering the 64 KB result). Each figure is the median of several runs,
//! with the min–max spread. Writes a Markdown table to `bench/results/`.
//!
//! `bench [--quick]` (after `make build` and `make build-cli`).

use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use mcptrail::testkit::workload;
use mcptrail_integration::envoy::{self, loopback, Direct, EnvoySpec, Upstream};
use mcptrail_integration::{DevIssuer, Envoy, TEST_HMAC_KEY_B64};
use serde_json::Value;

const AUD: &str = "https://mcp.bench/mcp";

/// What a variant puts in Envoy's filter chain.
struct Variant {
    name: String,
    /// `jwt_authn` before everything: `Some(cache)`.
    jwt_authn: Option<bool>,
    /// The mcptrail plugin configuration.
    mcptrail: Option<Value>,
}

struct Workload {
    name: &'static str,
    path: &'static str,
    h2: bool,
    tokens: Tokens,
    workers: u32,
}

/// The bearer tokens a workload sends.
#[derive(Clone, Copy, PartialEq)]
enum Tokens {
    /// One token, verified once and then cached.
    One,
    /// A new valid token per request: a signature check each (cold verification).
    Fresh,
    /// Each new token on two requests in a row, which 16 connections spread over the workers:
    /// how often the second is served by the process-wide cache another worker filled.
    FreshTwice,
    /// A new token per request with good claims, a known `kid` and a wrong signature (another
    /// token's): the flood an attacker can send; every answer is a 401.
    Forged,
}

#[derive(Default, Clone)]
struct Run {
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    errors: u64,
}

fn jwt_authn_yaml(jwks: &str, issuer: &str, cache: bool) -> String {
    let q = |v: &str| serde_json::to_string(v).unwrap_or_default();
    let cache = if cache {
        "\n                  jwt_cache_config: { jwt_cache_size: 1000 }"
    } else {
        ""
    };
    format!(
        r#"          - name: envoy.filters.http.jwt_authn
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
              providers:
                dev:
                  issuer: {issuer}
                  audiences: [{aud}]
                  forward: true
                  local_jwks: {{ inline_string: {jwks} }}{cache}
              rules:
              - match: {{ prefix: "/mcp" }}
                requires: {{ provider_name: dev }}
"#,
        issuer = q(issuer),
        aud = q(AUD),
        jwks = q(jwks),
    )
}

impl Variant {
    /// Whether the variant checks bearer tokens (`jwt_authn`, or mcptrail with `auth`).
    fn checks_tokens(&self) -> bool {
        self.jwt_authn.is_some()
            || self
                .mcptrail
                .as_ref()
                .is_some_and(|c| c.get("auth").is_some())
    }
}

/// Plain Envoy, then the mcptrail depths of the shared workload with `jwt_authn` (default and
/// cached) placed after the VM-only floor.
fn variants(issuer: &str, jwks: &Value) -> Vec<Variant> {
    let envoy = |name: &str, jwt_authn| Variant {
        name: name.to_string(),
        jwt_authn,
        mcptrail: None,
    };
    let mcptrail = |d: workload::Depth| Variant {
        name: format!("mcptrail: {}", d.name),
        jwt_authn: None,
        mcptrail: Some(d.config),
    };
    // The ablations (the full pipeline less one part) are timed by `make bench-v8`, and here
    // only on request (BENCH_ABLATIONS=1): the default run stays within its time budget.
    let ablations = std::env::var_os("BENCH_ABLATIONS").is_some();
    let mut depths = workload::ladder(issuer, AUD, jwks, TEST_HMAC_KEY_B64)
        .into_iter()
        .filter(|d| ablations || !d.ablation);
    let mut all = vec![envoy("plain Envoy", None)];
    all.extend(depths.by_ref().take(2).map(mcptrail));
    all.push(envoy("jwt_authn", Some(false)));
    all.push(envoy("jwt_authn + cache", Some(true)));
    all.extend(depths.map(mcptrail));
    all
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// `mcptrail collect` (release build) as its own process: the audit sink.
struct Sink {
    child: Child,
    addr: SocketAddr,
    out: PathBuf,
}

impl Sink {
    /// `keyed`: verify MACs too (a keyed collector flags every record without one, so the
    /// variants that seal no MAC get a collector without the key).
    fn start(dir: &Path, keyed: bool) -> anyhow::Result<Sink> {
        let bin = envoy::repo_root().join("target/release/mcptrail");
        if !bin.exists() {
            bail!("{} not found: run `make build-cli`", bin.display());
        }
        let addr = loopback(free_port()?);
        let out = dir.join(if keyed {
            "audit-mac.ndjson"
        } else {
            "audit.ndjson"
        });
        let mut cmd = Command::new(bin);
        cmd.args(["collect", "--listen", &addr.to_string(), "--out"])
            .arg(&out);
        if keyed {
            cmd.args(["--hmac-key", TEST_HMAC_KEY_B64]);
        }
        let child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(addr).is_err() {
            if Instant::now() > deadline {
                bail!("collector did not start");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Sink { child, addr, out })
    }

    fn lines(&self) -> u64 {
        std::fs::read(&self.out)
            .map(|b| b.iter().filter(|&&c| c == b'\n').count() as u64)
            .unwrap_or(0)
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn parse_duration_us(s: &str) -> Option<f64> {
    let s = s.trim();
    let (num, mul) = if let Some(v) = s.strip_suffix("us") {
        (v, 1.0)
    } else if let Some(v) = s.strip_suffix("ms") {
        (v, 1e3)
    } else if let Some(v) = s.strip_suffix('s') {
        (v, 1e6)
    } else {
        (s, 1.0)
    };
    num.trim().parse::<f64>().ok().map(|n| n * mul)
}

fn wrk(
    url: &str,
    script: &Path,
    conns: u32,
    secs: u32,
    env: &[(&str, &str)],
) -> anyhow::Result<Run> {
    let out = Command::new("wrk")
        .args([
            "-t1",
            &format!("-c{conns}"),
            &format!("-d{secs}s"),
            "--latency",
            "-s",
        ])
        .arg(script)
        .arg(url)
        .envs(env.iter().copied())
        .output()
        .context("running wrk (make bench-setup installs it)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut run = Run::default();
    for line in text.lines() {
        let t = line.trim();
        if let Some(v) = t.strip_prefix("Requests/sec:") {
            run.rps = v.trim().parse().unwrap_or(0.0);
        } else if let Some(v) = t.strip_prefix("50%") {
            run.p50_us = parse_duration_us(v).unwrap_or(0.0);
        } else if let Some(v) = t.strip_prefix("99%") {
            run.p99_us = parse_duration_us(v).unwrap_or(0.0);
        } else if let Some(v) = t.strip_prefix("Non-2xx or 3xx responses:") {
            run.errors += v.trim().parse::<u64>().unwrap_or(0);
        } else if t.starts_with("Socket errors:") {
            run.errors += t
                .split(|c: char| !c.is_ascii_digit())
                .filter_map(|n| n.parse::<u64>().ok())
                .sum::<u64>();
        }
    }
    if run.rps == 0.0 {
        bail!(
            "wrk gave no result:\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(run)
}

fn h2load(url: &str, body: &Path, token: &str, conns: u32, secs: u32) -> anyhow::Result<Run> {
    let out = Command::new("h2load")
        .args(["-t1", &format!("-c{conns}"), "-m4", &format!("-D{secs}")])
        .arg("-d")
        .arg(body)
        .args(["-H", "content-type: application/json"])
        .args(["-H", "accept: application/json, text/event-stream"])
        .args(["-H", &format!("authorization: Bearer {token}")])
        .arg(url)
        .output()
        .context("running h2load (make bench-setup installs it)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut run = Run::default();
    for line in text.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("finished in") {
            // "finished in 3.00s, 12345.67 req/s, 1.23MB/s"
            run.rps = rest
                .split(',')
                .nth(1)
                .and_then(|v| v.trim().strip_suffix("req/s"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0.0);
        } else if let Some(rest) = t.strip_prefix("time for request:") {
            // min max mean sd +/- sd
            let cols: Vec<&str> = rest.split_whitespace().collect();
            run.p50_us = cols
                .get(2)
                .and_then(|v| parse_duration_us(v))
                .unwrap_or(0.0);
            run.p99_us = cols
                .get(1)
                .and_then(|v| parse_duration_us(v))
                .unwrap_or(0.0);
        } else if let Some(rest) = t.strip_prefix("status codes:") {
            // "status codes: 1000 2xx, 0 3xx, 0 4xx, 0 5xx"
            for part in rest.split(',') {
                let p = part.trim();
                if p.ends_with("4xx") || p.ends_with("5xx") {
                    run.errors += p
                        .split_whitespace()
                        .next()
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0);
                }
            }
        }
    }
    if run.rps == 0.0 {
        bail!("h2load gave no result:\n{text}");
    }
    Ok(run)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

struct Cell {
    rps: f64,
    rps_min: f64,
    rps_max: f64,
    p50: f64,
    p99: f64,
    errors: u64,
    /// CPU time per request of Envoy and of the collector, µs (from /proc; 10 ms ticks).
    envoy_cpu_us: Option<f64>,
    sink_cpu_us: Option<f64>,
}

/// One variant's Envoy during the rounds, and what it did.
struct Lane<'a> {
    v: &'a Variant,
    envoy: Envoy,
    sink: &'a Sink,
    /// Records and batches shipped before the measured runs (the warm-up's).
    before: (u64, u64),
    /// Seconds under load, for the per-second audit figures.
    busy_s: f64,
}

impl Lane<'_> {
    /// One of the filter's counters (`wasmcustom.mcptrail.NAME`), 0 when Envoy has none.
    fn stat(&self, name: &str) -> u64 {
        self.envoy
            .stat(&format!("wasmcustom.mcptrail.{name}"))
            .unwrap_or(0)
    }
}

/// User + system CPU time of a process so far, µs (`/proc/PID/stat` fields 14 and 15).
fn cpu_us(pid: u32) -> Option<f64> {
    static TICK: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    let tick = *TICK.get_or_init(|| {
        tool_version("getconf", "CLK_TCK")
            .trim()
            .parse()
            .unwrap_or(100.0)
    });
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: fields are counted after its closing parenthesis.
    let rest = stat.rsplit_once(')')?.1;
    let mut f = rest.split_whitespace().skip(11);
    let utime: f64 = f.next()?.parse().ok()?;
    let stime: f64 = f.next()?.parse().ok()?;
    Some((utime + stime) / tick * 1e6)
}

fn summarise(runs: &[Run]) -> Cell {
    let mut rps: Vec<f64> = runs.iter().map(|r| r.rps).collect();
    let mut p50: Vec<f64> = runs.iter().map(|r| r.p50_us).collect();
    let mut p99: Vec<f64> = runs.iter().map(|r| r.p99_us).collect();
    Cell {
        rps_min: rps.iter().copied().fold(f64::INFINITY, f64::min),
        rps_max: rps.iter().copied().fold(0.0, f64::max),
        rps: median(&mut rps),
        p50: median(&mut p50),
        p99: median(&mut p99),
        errors: runs.iter().map(|r| r.errors).sum(),
        envoy_cpu_us: None,
        sink_cpu_us: None,
    }
}

fn tool_version(cmd: &str, arg: &str) -> String {
    Command::new(cmd)
        .arg(arg)
        .output()
        .map(|o| {
            let t = format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            t.lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .unwrap_or_else(|_| "not found".into())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    let (runs, secs) = if quick { (1, 2) } else { (3, 2) };
    let started = Instant::now();
    let dir = tempfile::tempdir()?;
    let idp = DevIssuer::start(loopback(0), None).await?;
    let jwks = idp.keys.read().map(|k| k.clone()).unwrap_or(Value::Null);
    let sinks = [
        Sink::start(dir.path(), false)?,
        Sink::start(dir.path(), true)?,
    ];
    let token = idp.token("alice", &["eng"], AUD);

    // Request bodies and wrk scripts.
    let body = workload::request();
    let body_path = dir.path().join("body.json");
    std::fs::write(&body_path, &body)?;
    let tokens_path = dir.path().join("tokens.txt");
    let n_tokens = if quick { 1500 } else { 6000 };
    eprintln!("bench: minting {n_tokens} tokens for the cold-verification workload...");
    let tokens: Vec<String> = (0..n_tokens)
        .map(|i| idp.token(&format!("user{i}"), &["eng"], AUD))
        .collect();
    std::fs::write(&tokens_path, tokens.join("\n") + "\n")?;
    // Each token carries the signature of the one before it: well-formed, right length, wrong.
    let forged: Vec<String> = tokens
        .iter()
        .zip(tokens.iter().cycle().skip(tokens.len() - 1))
        .map(|(t, prev)| {
            let input = t.rsplit_once('.').map_or("", |(i, _)| i);
            let sig = prev.rsplit_once('.').map_or("", |(_, s)| s);
            format!("{input}.{sig}")
        })
        .collect();
    let forged_path = dir.path().join("forged.txt");
    std::fs::write(&forged_path, forged.join("\n") + "\n")?;
    let lua = |tokens: Tokens| {
        format!(
            r#"local body = io.open("{body}"):read("*a")
local tokens = {{}}
{load}
-- Each round starts further on (BENCH_TOKEN_OFFSET), so no round meets the tokens an
-- earlier one left in the filter's cache (1,024 entries).
local i = tonumber(os.getenv("BENCH_TOKEN_OFFSET") or "0")
local n = 0
request = function()
  {step}
  return wrk.format("POST", nil, {{["Content-Type"] = "application/json",
    ["Accept"] = "application/json, text/event-stream",
    ["Authorization"] = "Bearer " .. tokens[i]}}, body)
end
"#,
            body = body_path.display(),
            load = match tokens {
                Tokens::One => format!(r#"tokens[1] = "{token}""#),
                Tokens::Fresh | Tokens::FreshTwice | Tokens::Forged => format!(
                    r#"for line in io.lines("{}") do tokens[#tokens + 1] = line end"#,
                    if tokens == Tokens::Forged {
                        forged_path.display()
                    } else {
                        tokens_path.display()
                    }
                ),
            },
            step = if tokens == Tokens::FreshTwice {
                "n = n + 1\n  if n % 2 == 1 then i = i % #tokens + 1 end"
            } else {
                "i = i % #tokens + 1"
            }
        )
    };
    let warm_script = dir.path().join("warm.lua");
    let cold_script = dir.path().join("cold.lua");
    let forged_script = dir.path().join("forged.lua");
    let twice_script = dir.path().join("twice.lua");
    std::fs::write(&twice_script, lua(Tokens::FreshTwice))?;
    std::fs::write(&warm_script, lua(Tokens::One))?;
    std::fs::write(&cold_script, lua(Tokens::Fresh))?;
    std::fs::write(&forged_script, lua(Tokens::Forged))?;

    let direct = vec![
        Direct {
            path: "/mcp/json1k".into(),
            content_type: "application/json".into(),
            body: workload::json_reply(1024),
        },
        Direct {
            path: "/mcp/json64k".into(),
            content_type: "application/json".into(),
            body: workload::json_reply(64 * 1024),
        },
        Direct {
            path: "/mcp/sse100".into(),
            content_type: "text/event-stream".into(),
            body: workload::sse_reply(100),
        },
    ];
    let workloads = [
        Workload {
            name: "1 KB tools/call, HTTP/1.1, 1 worker",
            path: "/mcp/json1k",
            h2: false,
            tokens: Tokens::One,
            workers: 1,
        },
        Workload {
            name: "1 KB tools/call, HTTP/1.1, 2 workers",
            path: "/mcp/json1k",
            h2: false,
            tokens: Tokens::One,
            workers: 2,
        },
        Workload {
            name: "each new token on two requests in a row, HTTP/1.1, 2 workers",
            path: "/mcp/json1k",
            h2: false,
            tokens: Tokens::FreshTwice,
            workers: 2,
        },
        Workload {
            name: "1 KB tools/call, h2c, 1 worker",
            path: "/mcp/json1k",
            h2: true,
            tokens: Tokens::One,
            workers: 1,
        },
        Workload {
            name: "64 KB JSON result, HTTP/1.1, 1 worker",
            path: "/mcp/json64k",
            h2: false,
            tokens: Tokens::One,
            workers: 1,
        },
        Workload {
            name: "64 KB JSON result behind an upstream hop, HTTP/1.1, 1 worker",
            path: "/mcp/upstream64k",
            h2: false,
            tokens: Tokens::One,
            workers: 1,
        },
        Workload {
            name: "SSE, 100 events, HTTP/1.1, 1 worker",
            path: "/mcp/sse100",
            h2: false,
            tokens: Tokens::One,
            workers: 1,
        },
        Workload {
            name: "new token per request (cold verify), HTTP/1.1, 1 worker",
            path: "/mcp/json1k",
            h2: false,
            tokens: Tokens::Fresh,
            workers: 1,
        },
        Workload {
            name: "forged tokens (good claims, wrong signature; all 401), HTTP/1.1, 1 worker",
            path: "/mcp/json1k",
            h2: false,
            tokens: Tokens::Forged,
            workers: 1,
        },
    ];
    // BENCH_VARIANTS / BENCH_WORKLOADS: `;`-separated substrings, for quick experiments.
    let pick = |var: &str, name: &str| {
        std::env::var(var).map_or(true, |f| f.split(';').any(|p| name.contains(p.trim())))
    };
    let variants: Vec<Variant> = variants(&idp.issuer, &jwks)
        .into_iter()
        .filter(|v| v.name == "plain Envoy" || pick("BENCH_VARIANTS", &v.name))
        .collect();
    let workloads: Vec<Workload> = workloads
        .into_iter()
        .filter(|w| pick("BENCH_WORKLOADS", w.name))
        .collect();
    let conns = 16;
    // The upstream of the "behind an upstream hop" workload: a second, filterless Envoy that
    // answers the 64 KB result itself, so the body crosses a real HTTP/1.1 connection (in
    // chunks, through the codec and the router) as it would from an MCP server.
    let upstream = {
        let mut spec = EnvoySpec::new(
            envoy::wasm_module(),
            Value::Null,
            Upstream::one("mcp_server", loopback(9)),
        );
        spec.without_filter = true;
        spec.direct = vec![Direct {
            path: "/mcp/upstream64k".into(),
            content_type: "application/json".into(),
            body: workload::json_reply(64 * 1024),
        }];
        tokio::task::block_in_place(|| Envoy::start(&spec, 1))
            .context("starting the upstream Envoy")?
    };

    let mut results: Vec<Vec<Option<Cell>>> = workloads.iter().map(|_| Vec::new()).collect();
    let mut seq_p50: Vec<f64> = Vec::new();
    let mut extras: Vec<String> = Vec::new();
    let mut shared: Vec<String> = Vec::new();
    for workers in [1u32, 2] {
        if !workloads.iter().any(|w| w.workers == workers) {
            continue;
        }
        // Every variant's Envoy runs at once and the rounds below take them in turn, so a slow
        // drift of the shared machine falls on all variants alike, not on whichever ran then.
        let mut lanes = Vec::new();
        for v in &variants {
            let keyed = v
                .mcptrail
                .as_ref()
                .is_some_and(|c| c["audit"].get("hmac_key").is_some());
            let sink = &sinks[usize::from(keyed)];
            let mut spec = EnvoySpec::mcp(
                v.mcptrail.clone().unwrap_or(Value::Null),
                upstream.listen,
                sink.addr,
            );
            spec.without_filter = v.mcptrail.is_none();
            spec.direct = direct.clone();
            if let Some(cache) = v.jwt_authn {
                spec.extra_filters_yaml = jwt_authn_yaml(&jwks.to_string(), &idp.issuer, cache);
            }
            let envoy = tokio::task::block_in_place(|| Envoy::start(&spec, workers))
                .with_context(|| format!("starting Envoy for {}", v.name))?;
            // Warm up (connections, V8 tiering, caches).
            wrk(
                &format!("{}/mcp/json1k", envoy.url()),
                &warm_script,
                conns,
                1,
                &[],
            )?;
            let mut lane = Lane {
                v,
                envoy,
                sink,
                before: (0, 0),
                busy_s: 0.0,
            };
            lane.before = (lane.stat("records_shipped"), lane.stat("batches_shipped"));
            lanes.push(lane);
        }
        for (wi, w) in workloads.iter().enumerate() {
            if w.workers != workers {
                continue;
            }
            let token_stats = |lane: &Lane| {
                [
                    "token_verifications",
                    "token_cache_hits",
                    "token_shared_hits",
                ]
                .map(|n| lane.stat(n))
            };
            // Metrics reach Envoy on the root's tick: let the warm-up's land first.
            let settle = || std::thread::sleep(Duration::from_millis(1500));
            if w.tokens == Tokens::FreshTwice {
                settle();
            }
            let stats_before: Vec<[u64; 3]> = lanes.iter().map(token_stats).collect();
            let mut runs_of: Vec<Vec<Run>> = lanes.iter().map(|_| Vec::new()).collect();
            let mut cpu_of = vec![(0.0f64, 0.0f64, 0.0f64); lanes.len()];
            for round in 0..runs {
                let offset = (round as usize * n_tokens / runs as usize).to_string();
                for (li, lane) in lanes.iter_mut().enumerate() {
                    // The token rows compare token checks: a variant that checks none (plain
                    // Envoy, mcptrail without `auth`) would repeat its 1 KB row (and the
                    // bench would pass its 10 minutes).
                    if w.tokens != Tokens::One && !lane.v.checks_tokens() {
                        continue;
                    }
                    let url = format!("{}{}", lane.envoy.url(), w.path);
                    let pid = lane.envoy.pid();
                    let before = (pid.and_then(cpu_us), cpu_us(lane.sink.child.id()));
                    let r = if w.h2 {
                        h2load(&url, &body_path, &token, conns, secs)?
                    } else {
                        wrk(
                            &url,
                            match w.tokens {
                                Tokens::One => &warm_script,
                                Tokens::Fresh => &cold_script,
                                Tokens::Forged => &forged_script,
                                Tokens::FreshTwice => &twice_script,
                            },
                            conns,
                            secs,
                            &[("BENCH_TOKEN_OFFSET", &offset)],
                        )?
                    };
                    let after = (pid.and_then(cpu_us), cpu_us(lane.sink.child.id()));
                    let c = &mut cpu_of[li];
                    c.0 += r.rps * f64::from(secs);
                    c.1 += after.0.zip(before.0).map_or(f64::NAN, |(a, b)| a - b);
                    c.2 += after.1.zip(before.1).map_or(f64::NAN, |(a, b)| a - b);
                    lane.busy_s += f64::from(secs);
                    runs_of[li].push(r);
                }
            }
            if w.tokens == Tokens::FreshTwice {
                settle();
            }
            for (li, lane) in lanes.iter().enumerate() {
                let rs = &runs_of[li];
                if rs.is_empty() {
                    results[wi].push(None);
                    continue;
                }
                if w.tokens == Tokens::FreshTwice && lane.v.mcptrail.is_some() {
                    let after = token_stats(lane);
                    let [v, c, sh] = [0, 1, 2].map(|k| after[k] - stats_before[li][k]);
                    let requests = cpu_of[li].0.max(1.0);
                    shared.push(format!(
                        "| {} | {:.0} | {:.2} | {:.2} | {:.2} |",
                        lane.v.name,
                        requests,
                        v as f64 / requests,
                        c as f64 / requests,
                        sh as f64 / requests
                    ));
                }
                let mut cell = summarise(rs);
                let (requests, envoy_us, sink_us) = cpu_of[li];
                let per_request =
                    |us: f64| Some(us / requests).filter(|x| requests > 0.0 && x.is_finite());
                cell.envoy_cpu_us = per_request(envoy_us);
                cell.sink_cpu_us = per_request(sink_us);
                eprintln!(
                    "bench: {:<24} {:<58} {:>9.0} req/s  p50 {:>7.0} µs  p99 {:>7.0} µs{}",
                    lane.v.name,
                    w.name,
                    cell.rps,
                    cell.p50,
                    cell.p99,
                    if cell.errors > 0 {
                        format!("  ({} errors)", cell.errors)
                    } else {
                        String::new()
                    }
                );
                results[wi].push(Some(cell));
            }
        }
        if workers == 1 {
            // Added latency per request: one connection, one request at a time, in rounds too.
            let mut p50s: Vec<Vec<f64>> = lanes.iter().map(|_| Vec::new()).collect();
            for _ in 0..runs {
                for (li, lane) in lanes.iter_mut().enumerate() {
                    let url = format!("{}/mcp/json1k", lane.envoy.url());
                    let seq = wrk(&url, &warm_script, 1, 1, &[])?;
                    lane.busy_s += 1.0;
                    p50s[li].push(seq.p50_us);
                }
            }
            // The last partial batches leave at the next flush.
            tokio::time::sleep(Duration::from_millis(1500)).await;
            for (li, lane) in lanes.iter().enumerate() {
                let p50 = median(&mut p50s[li]);
                seq_p50.push(p50);
                let shipped = lane.stat("records_shipped") - lane.before.0;
                let batches = lane.stat("batches_shipped") - lane.before.1;
                let vm = lane.stat("vm_memory_bytes");
                // A filter that kept up only by losing records would look cheap: say so.
                let dropped = lane.stat("records_dropped_buffer_full")
                    + lane.stat("records_dropped_retries_exhausted");
                let busy = lane.busy_s.max(1.0);
                extras.push(format!(
                    "| {} | {:.0} | {:.1} | {} | {:.1} | {} | {:.0} |",
                    lane.v.name,
                    p50,
                    shipped as f64 / busy,
                    dropped,
                    batches as f64 / busy,
                    if vm > 0 {
                        format!("{:.1}", vm as f64 / 1048576.0)
                    } else {
                        "–".into()
                    },
                    lane.envoy.memory_kib().1 as f64 / 1024.0,
                ));
            }
        }
    }

    // The report.
    let now = mcptrail::time::rfc3339_ms(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
    );
    let module = envoy::wasm_module();
    let module_size = std::fs::metadata(&module).map(|m| m.len()).unwrap_or(0);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mut md = String::new();
    let _ = writeln!(md, "# mcptrail benchmark, {now}\n");
    let _ = writeln!(md, "- machine: {cpu}, {cores} cores; everything on loopback (load generator, Envoy, audit collector)");
    let _ = writeln!(
        md,
        "- Envoy: {}",
        tool_version(&envoy::envoy_bin().display().to_string(), "--version")
            .split("version:")
            .nth(1)
            .unwrap_or("?")
            .trim()
    );
    let _ = writeln!(
        md,
        "- load: {}; {}",
        tool_version("wrk", "--version"),
        tool_version("h2load", "--version")
    );
    // The size a deployment could ship after binaryen's size optimiser (it is not applied to
    // the module measured here).
    let opt_size = Command::new("bash")
        .arg(envoy::repo_root().join("scripts/wasm-opt-size.sh"))
        .arg(&module)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map_or("wasm-opt not installed".to_string(), |n| {
            format!("{n} bytes")
        });
    let _ = writeln!(
        md,
        "- module: {module_size} bytes as built; after `wasm-opt -Oz`: {opt_size}"
    );
    let _ = writeln!(md, "- method: every variant's Envoy runs at once, warmed up for 1 s; {runs} rounds, each giving every variant one run of {secs} s in turn ({conns} connections, 1 load thread), so drifts of the shared machine hit all alike; median (min–max) of the runs; Envoy answers the calls itself (`direct_response`), so only the filters differ, except in the \"behind an upstream hop\" row, where a second Envoy without the filter answers them over HTTP/1.1 (its CPU is not in the Envoy CPU column); the rows of new, forged and twice-used tokens run only the variants that check tokens. h2c latency columns are h2load's mean and max (it reports no percentiles).");
    let _ = writeln!(md, "- request: a {} byte `tools/call`; the token is RS256 (2048-bit); `mcptrail: full` adds an HMAC chain, policy and masking of responses; all mcptrail variants ship records to `mcptrail collect` (fsync per batch)\n", body.len());
    for (wi, w) in workloads.iter().enumerate() {
        let _ = writeln!(md, "## {}\n", w.name);
        let _ = writeln!(
            md,
            "| variant | req/s (min–max) | × plain | × jwt_authn | p50 µs | p99 µs | errors | Envoy CPU µs/req | collector CPU µs/req |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|");
        let plain = results[wi].first().and_then(|c| c.as_ref()).map(|c| c.rps);
        let jwt_authn = variants
            .iter()
            .position(|v| v.name == "jwt_authn")
            .and_then(|i| results[wi].get(i))
            .and_then(|c| c.as_ref())
            .map(|c| c.rps);
        for (vi, v) in variants.iter().enumerate() {
            match results[wi].get(vi).and_then(|c| c.as_ref()) {
                Some(c) => {
                    let ratio = |to: Option<f64>| {
                        to.map_or("–".to_string(), |p| format!("{:.2}", c.rps / p))
                    };
                    let us = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.1}"));
                    let _ = writeln!(
                        md,
                        "| {} | {:.0} ({:.0}–{:.0}) | {} | {} | {:.0} | {:.0} | {} | {} | {} |",
                        v.name,
                        c.rps,
                        c.rps_min,
                        c.rps_max,
                        ratio(plain),
                        ratio(jwt_authn),
                        c.p50,
                        c.p99,
                        c.errors,
                        us(c.envoy_cpu_us),
                        us(c.sink_cpu_us)
                    );
                }
                None => {
                    let _ = writeln!(md, "| {} | – | | | | | | | |", v.name);
                }
            }
        }
        let _ = writeln!(md);
    }
    if !shared.is_empty() {
        let _ = writeln!(
            md,
            "## The process-wide token cache (2 workers, each new token twice)\n"
        );
        let _ = writeln!(md, "Per request: signature checks, hits in the worker's own cache, and hits in the cache the workers of one Envoy share (a token another worker verified). Without the shared cache, a second use on the other worker would be a second check.\n");
        let _ = writeln!(md, "| variant | requests | checks/request | own-cache hits/request | shared hits/request |");
        let _ = writeln!(md, "|---|---|---|---|---|");
        for line in &shared {
            let _ = writeln!(md, "{line}");
        }
        let _ = writeln!(md);
    }
    let _ = writeln!(md, "## Per request, audit traffic, memory (1 worker)\n");
    let _ = writeln!(md, "Sequential requests on one connection give the added latency (median of {runs} rounds of 1 s); records and callouts per second are averaged over the seconds that Envoy was under load, records dropped are its total (buffer full or retries exhausted; each one counted in an `audit.dropped` record); VM memory is the `vm_memory_bytes` gauge (all VMs of the process), RSS is Envoy's peak.\n");
    let _ = writeln!(md, "| variant | p50 µs, 1 connection | added µs | records shipped/s | records dropped | callouts/s | VM memory MiB | Envoy peak RSS MiB |");
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|");
    let plain_seq = seq_p50.first().copied().unwrap_or(0.0);
    for (i, line) in extras.iter().enumerate() {
        let added = seq_p50.get(i).map_or(0.0, |p| p - plain_seq);
        // Insert the added-latency column after the first two.
        let mut cols: Vec<String> = line
            .trim_matches('|')
            .split('|')
            .map(|c| c.trim().to_string())
            .collect();
        cols.insert(2, format!("{added:+.0}"));
        let _ = writeln!(md, "| {} |", cols.join(" | "));
    }
    let _ = writeln!(
        md,
        "\nCollector received {} records in all. Bench wall time: {:.0} s.",
        sinks.iter().map(Sink::lines).sum::<u64>(),
        started.elapsed().as_secs_f64()
    );

    let results_dir = envoy::repo_root().join("bench/results");
    std::fs::create_dir_all(&results_dir)?;
    let file = results_dir.join(format!("{}.md", now.get(..10).unwrap_or("latest")));
    std::fs::write(&file, &md)?;
    std::fs::write(results_dir.join("latest.md"), &md)?;
    println!("{md}");
    eprintln!("bench: wrote {}", file.display());
    Ok(())
}
