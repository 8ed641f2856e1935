//! `audit.format: otlp` against a real OpenTelemetry receiver: rotel (PyPI `rotel`, installed
//! by `make setup`), fed by the filter through real Envoy. rotel decodes OTLP/HTTP JSON
//! strictly (a wrong type anywhere is a 400) and, with its debug exporter, prints every log
//! record it accepted; the test reads the records back from that output: each one is a
//! valid record (schema) and the chain still verifies, so `body.stringValue` carried the
//! exact lines.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mcptrail_integration::demo::Mode;
use mcptrail_integration::envoy::{loopback, tools_dir};
use mcptrail_integration::process::{free_port, Server};
use mcptrail_integration::{base_plugin_config, schema, Stack, Upstream, TEST_HMAC_KEY};
use rmcp::model::{
    CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation, ProtocolVersion,
};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::ServiceExt;
use serde_json::{json, Value};

/// A rotel process: OTLP/HTTP receiver on loopback, logs printed by the debug exporter.
struct Rotel {
    _server: Server,
    http: SocketAddr,
    out: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Rotel {
    fn start() -> Rotel {
        let bin = tools_dir().join("bin").join("rotel");
        assert!(
            bin.exists(),
            "rotel not found at {} (run `make setup`)",
            bin.display()
        );
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("rotel.out");
        let http = loopback(free_port().unwrap());
        let grpc = loopback(free_port().unwrap());
        let started = Server::start(
            Command::new(&bin)
                .arg("start")
                .args(["--otlp-http-endpoint", &http.to_string()])
                .args(["--otlp-grpc-endpoint", &grpc.to_string()])
                // Accept, print what was accepted, export nowhere.
                .args(["--exporter", "blackhole"])
                .args(["--debug-log", "logs", "--debug-log-verbosity", "detailed"])
                .arg("--pid-file")
                .arg(dir.path().join("rotel.pid"))
                .arg("--log-file")
                .arg(dir.path().join("rotel.log"))
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(&out).unwrap())
                .stderr(Stdio::null()),
            http,
            "rotel",
            Duration::from_secs(10),
        );
        match started {
            Ok(server) => Rotel {
                _server: server,
                http,
                out,
                _dir: dir,
            },
            Err(e) => panic!(
                "{e}:\n{}",
                std::fs::read_to_string(&out).unwrap_or_default()
            ),
        }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// The log records rotel printed: `(timestamp nanos, body string, whole block)`.
    fn log_records(&self) -> Vec<(String, String, String)> {
        self.output()
            .split("LogRecord #")
            .skip(1)
            .filter_map(|block| {
                let field = |name: &str| {
                    block
                        .lines()
                        .find_map(|l| l.trim_start().strip_prefix(name).map(str::to_string))
                };
                let ts = field("Timestamp: ")?;
                let body = field("Body: Str(")?.strip_suffix(')')?.to_string();
                Some((ts, body, block.to_string()))
            })
            .collect()
    }
}

impl Drop for Rotel {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("----- rotel output -----\n{}\n-----", self.output());
        }
    }
}

async fn drive(stack: &Stack) {
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(stack.mcp_url()),
    );
    let info = ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("otlp-e2e", "1.0"),
    )
    .with_protocol_version(ProtocolVersion::V_2025_06_18);
    let client = info.serve(transport).await.unwrap();
    client.list_all_tools().await.unwrap();
    let args = json!({"text": "to rotel \"quoted\" ünïcode"});
    client
        .call_tool(
            CallToolRequestParams::new("echo").with_arguments(args.as_object().cloned().unwrap()),
        )
        .await
        .unwrap();
    client
        .call_tool(CallToolRequestParams::new("fail"))
        .await
        .unwrap();
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_output_is_accepted_by_rotel() {
    let started = Instant::now();
    let rotel = Rotel::start();
    let mut cfg = base_plugin_config();
    cfg["audit"]["cluster"] = json!("otel");
    cfg["audit"]["authority"] = json!("rotel");
    cfg["audit"]["path"] = json!("/v1/logs");
    cfg["audit"]["format"] = json!("otlp");
    let stack = Stack::start_with(
        Mode {
            json: false,
            stateless: false,
        },
        Some(cfg),
        vec![Upstream::one("otel", rotel.http)],
    )
    .await
    .unwrap();
    drive(&stack).await;

    // Records are shipped in push order: wait for the last one driven (the session's end).
    let deadline = Instant::now() + Duration::from_secs(15);
    let records = loop {
        let recs = rotel.log_records();
        if recs
            .iter()
            .any(|(_, b, _)| b.contains(r#""kind":"session.end""#))
        {
            break recs;
        }
        assert!(
            Instant::now() < deadline,
            "rotel did not print the session.end record; it printed:\n{}",
            rotel.output()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        !rotel.output().contains("Failed to decode"),
        "rotel refused a request:\n{}",
        rotel.output()
    );
    assert_eq!(
        stack
            .envoy
            .stat("cluster.otel.upstream_rq_2xx")
            .map(|n| n > 0),
        Some(true),
        "rotel answered 2xx"
    );

    // The bodies are the exact record lines: valid records, and the chain verifies.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("from-rotel.ndjson");
    let lines: Vec<&str> = records.iter().map(|(_, b, _)| b.as_str()).collect();
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    for l in &lines {
        if let Err(e) = schema::check_line(l) {
            panic!("a record rotel accepted is not valid:\n{l}\n{e}");
        }
    }
    let report =
        mcptrail_cli::verify::verify_files(Some(TEST_HMAC_KEY.to_vec()), &[&file]).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.streams.len(), 1);
    assert_eq!(report.streams[0].records as usize, lines.len());

    // What rotel made of the envelope: resource, scope, timestamps, severity, attributes.
    let out = rotel.output();
    assert!(out.contains("-> service.name: Str(mcptrail)"), "{out}");
    assert!(out.contains(&format!(
        "-> service.instance.id: Str({})",
        report.streams[0].stream
    )));
    assert!(out.contains("InstrumentationScope mcptrail"));
    let kinds: Vec<String> = lines
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["kind"].to_string())
        .collect();
    for kind in ["session.start", "command", "notification", "session.end"] {
        assert!(
            kinds.contains(&format!("\"{kind}\"")),
            "{kind} in {kinds:?}"
        );
    }
    let (ts, body, block) = records
        .iter()
        .find(|(_, b, _)| b.contains(r#""tool":"echo""#))
        .expect("the echo command");
    let rec: Value = serde_json::from_str(body).unwrap();
    let ms = mcptrail::time::parse_rfc3339_ms(rec["ts"].as_str().unwrap()).unwrap();
    assert_eq!(
        ts,
        &(ms as u128 * 1_000_000).to_string(),
        "timeUnixNano is ts"
    );
    assert_eq!(
        rec["mcp"]["arguments"]["text"],
        "to rotel \"quoted\" ünïcode"
    );
    for attr in [
        "-> event.name: Str(mcptrail.command)",
        "-> mcp.method.name: Str(tools/call)",
        "-> gen_ai.tool.name: Str(echo)",
        "-> mcp.protocol.version: Str(2025-06-18)",
        "-> http.response.status_code: Int(200)",
        "-> mcptrail.outcome: Str(ok)",
        "SeverityText: INFO",
    ] {
        assert!(block.contains(attr), "{attr} in:\n{block}");
    }
    assert!(block.contains(&format!(
        "-> mcp.session.id: Str({})",
        rec["session"].as_str().unwrap()
    )));
    let (_, _, failed) = records
        .iter()
        .find(|(_, b, _)| b.contains(r#""tool":"fail""#))
        .expect("the fail command");
    assert!(failed.contains("SeverityText: WARN"), "{failed}");
    assert!(failed.contains("-> mcptrail.outcome: Str(error)"));
    eprintln!(
        "rotel accepted {} records over {} requests; {:?}",
        lines.len(),
        stack
            .envoy
            .stat("cluster.otel.upstream_rq_2xx")
            .unwrap_or(0),
        started.elapsed()
    );
}
