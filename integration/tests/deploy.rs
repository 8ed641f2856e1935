//! The deployment artefacts, checked as far as a machine without Docker or Kubernetes can:
//! - every Envoy configuration in the repository passes `envoy --mode validate` (which also
//!   runs the filter's `on_configure` on its plugin configuration);
//! - their mcptrail filter blocks are the one `integration::envoy::render` produces (so the
//!   tests, `make run`, the benches and the deployment files cannot drift apart);
//! - the Istio manifests match the Istio CRD schemas, and the plugin configurations they carry
//!   are accepted by the filter;
//! - `docker-compose.yml` matches the compose specification's JSON Schema and is wired to the
//!   Envoy, collector and approval service configurations it mounts (the approval service of
//!   `deploy/compose/approvals.json` also runs behind the compose Envoy configuration);
//! - `make image` writes a well-formed Wasm OCI image layout.

use std::path::{Path, PathBuf};
use std::process::Command;

use mcptrail_integration::envoy::{self, loopback, EnvoySpec, Upstream};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

/// A throwaway self-signed CA certificate (no key kept anywhere): stands in for the CA files
/// the configurations name, which do not exist on a build machine.
const TEST_CA_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBjDCCATOgAwIBAgIUFZngZcjoIb06FtsjN9GpWhNX1vIwCgYIKoZIzj0EAwIw
GzEZMBcGA1UEAwwQbWNwdHJhaWwgdGVzdCBDQTAgFw0yNjExMjQwNTMwMjFaGA8y
MTI2MTAzMTA1MzAyMVowGzEZMBcGA1UEAwwQbWNwdHJhaWwgdGVzdCBDQTBZMBMG
ByqGSM49AgEGCCqGSM49AwEHA0IABA0G1N2UjKbMYr6sVGSwF/zNU6xrsSPI3mlt
jxyt76dr3E/mjx6XqzlW6SxKCcNywqBdbDSC7tB3bO85hGA7E0yjUzBRMB0GA1Ud
DgQWBBQUltlmy9XHj0cXsDhzAday13waRTAfBgNVHSMEGDAWgBQUltlmy9XHj0cX
sDhzAday13waRTAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0cAMEQCIBg4
fmHSJnvoHIUnc3WDQCHMlLnzT+vp+1W1N4NvuvTfAiAHvU+3OZrMGoHTatUzhXkW
9JJKrTHQHNVPEgK5pDB4sQ==
-----END CERTIFICATE-----
";

const WASM_FILTER: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
const ROUTER: &str = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router";
const HCM: &str = "envoy.filters.network.http_connection_manager";
/// The failure policy every deployment file uses (tests and `make run` keep Envoy's default,
/// FAIL_CLOSED, so a VM crash fails them loudly).
const DEPLOY_FAILURE_POLICY: &str = "FAIL_RELOAD";
/// The Istio manifests.
const ISTIO_MANIFESTS: [&str; 2] = [
    "envoy/istio/wasmplugin.yaml",
    "envoy/istio/envoyfilter.yaml",
];

fn repo(rel: &str) -> PathBuf {
    envoy::repo_root().join(rel)
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// All YAML documents of a file, as JSON values.
fn yaml_docs(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| serde::Deserialize::deserialize(d).expect("YAML"))
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn yaml(text: &str) -> Value {
    let mut docs = yaml_docs(text);
    assert_eq!(docs.len(), 1, "one YAML document expected");
    docs.remove(0)
}

/// Stand-ins for the paths a deployment file names: the built module and a CA bundle.
struct Subst {
    dir: tempfile::TempDir,
}

impl Subst {
    fn new() -> Subst {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), TEST_CA_PEM).unwrap();
        Subst { dir }
    }

    fn apply(&self, text: &str) -> String {
        let ca = self.dir.path().join("ca.pem").display().to_string();
        text.replace(
            "/etc/envoy/mcptrail.wasm",
            &envoy::wasm_module().display().to_string(),
        )
        .replace("/etc/envoy/certs/collector-ca.pem", &ca)
        .replace("/etc/ssl/certs/ca-certificates.crt", &ca)
    }

    /// Writes `text` (YAML or JSON) with the paths substituted and runs `envoy --mode validate`.
    fn validate(&self, name: &str, text: &str) -> anyhow::Result<String> {
        let path = self.dir.path().join(name);
        std::fs::write(&path, self.apply(text))?;
        envoy::validate(&path)
    }
}

fn module_built() {
    let m = envoy::wasm_module();
    assert!(
        m.exists(),
        "{} is missing: run `make build` first",
        m.display()
    );
}

/// The HTTP filter lists of every connection manager in a bootstrap.
fn http_filter_lists(bootstrap: &Value) -> Vec<&Vec<Value>> {
    let mut out = Vec::new();
    for l in bootstrap["static_resources"]["listeners"]
        .as_array()
        .into_iter()
        .flatten()
    {
        for fc in l["filter_chains"].as_array().into_iter().flatten() {
            for f in fc["filters"].as_array().into_iter().flatten() {
                if f["name"] == HCM {
                    if let Some(list) = f["typed_config"]["http_filters"].as_array() {
                        out.push(list);
                    }
                }
            }
        }
    }
    out
}

/// The mcptrail wasm filter of a bootstrap (exactly one), checked to sit right before the
/// router; returns the filter's `config`.
fn mcptrail_filter(what: &str, bootstrap: &Value) -> Value {
    let mut found = Vec::new();
    for list in http_filter_lists(bootstrap) {
        for (i, f) in list.iter().enumerate() {
            if f["typed_config"]["@type"] == WASM_FILTER {
                let next = list.get(i + 1).map(|n| &n["typed_config"]["@type"]);
                assert_eq!(
                    next,
                    Some(&json!(ROUTER)),
                    "{what}: the mcptrail filter must come right before the router"
                );
                found.push(f["typed_config"]["config"].clone());
            }
        }
    }
    assert_eq!(found.len(), 1, "{what}: one mcptrail filter expected");
    found.remove(0)
}

/// A filter `config` without what legitimately differs per deployment (where the module comes
/// from, the plugin configuration).
fn filter_shape(config: &Value) -> Value {
    let mut c = config.clone();
    if let Some(o) = c.as_object_mut() {
        o.remove("configuration");
    }
    if let Some(vm) = c.get_mut("vm_config").and_then(Value::as_object_mut) {
        vm.remove("code");
    }
    c
}

/// The plugin configuration (JSON) of a filter `config`.
fn plugin_config(what: &str, config: &Value) -> Value {
    assert_eq!(
        config["configuration"]["@type"], "type.googleapis.com/google.protobuf.StringValue",
        "{what}"
    );
    let s = config["configuration"]["value"].as_str().expect("value");
    serde_json::from_str(s).unwrap_or_else(|e| panic!("{what}: plugin configuration: {e}"))
}

/// A spec with stand-in upstreams for every cluster the plugin configuration names.
fn spec_for(plugin_config: Value) -> EnvoySpec {
    let mut names = vec![plugin_config["audit"]["cluster"]
        .as_str()
        .unwrap_or("audit_collector")
        .to_string()];
    for p in plugin_config["auth"]["providers"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some(c) = p["jwks_cluster"].as_str() {
            names.push(c.to_string());
        }
    }
    let mut spec = EnvoySpec::new(
        envoy::wasm_module(),
        plugin_config,
        Upstream::one("mcp_server", loopback(9)),
    );
    names.dedup();
    for name in names {
        spec.clusters.push(Upstream::one(&name, loopback(9)));
    }
    spec
}

/// The reference filter block: what `render` gives, with the deployment failure policy.
fn rendered_filter_shape() -> Value {
    let mut spec = spec_for(mcptrail_integration::base_plugin_config());
    spec.failure_policy = DEPLOY_FAILURE_POLICY.into();
    filter_shape(&mcptrail_filter("rendered", &yaml(&envoy::render(&spec))))
}

fn istio_docs(file: &str, kind: &str) -> Vec<Value> {
    yaml_docs(&read(file))
        .into_iter()
        .filter(|d| d["kind"] == kind)
        .collect()
}

/// The EnvoyFilter's HTTP_FILTER and CLUSTER patch values.
fn envoyfilter_patches() -> (Value, Value) {
    let ef = istio_docs("envoy/istio/envoyfilter.yaml", "EnvoyFilter");
    assert_eq!(ef.len(), 1);
    let patches = ef[0]["spec"]["configPatches"].as_array().unwrap().clone();
    let pick = |apply: &str| {
        let p: Vec<&Value> = patches.iter().filter(|p| p["applyTo"] == apply).collect();
        assert_eq!(p.len(), 1, "one {apply} patch");
        p[0].clone()
    };
    let filter = pick("HTTP_FILTER");
    assert_eq!(filter["patch"]["operation"], "INSERT_BEFORE");
    assert_eq!(
        filter["match"]["listener"]["filterChain"]["filter"]["subFilter"]["name"],
        "envoy.filters.http.router"
    );
    let cluster = pick("CLUSTER");
    assert_eq!(cluster["patch"]["operation"], "ADD");
    (
        filter["patch"]["value"].clone(),
        cluster["patch"]["value"].clone(),
    )
}

fn node_bin() -> PathBuf {
    PathBuf::from(std::env::var_os("NODE").unwrap_or_else(|| "node".into()))
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (run `make setup`)"));
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

// ---------------------------------------------------------------- Envoy configurations

#[test]
fn standalone_envoy_config_validates() {
    module_built();
    let s = Subst::new();
    let out = s.validate("envoy.yaml", &read("envoy/envoy.yaml")).unwrap();
    assert!(out.contains("OK"), "{out}");
}

#[test]
fn compose_envoy_config_validates() {
    module_built();
    let s = Subst::new();
    let out = s
        .validate("compose.yaml", &read("envoy/compose.yaml"))
        .unwrap();
    assert!(out.contains("OK"), "{out}");
}

/// Validation is real: a broken plugin configuration inside a deployment file is refused, by
/// the filter, naming the key.
#[test]
fn a_bad_plugin_config_in_a_deployment_file_is_refused() {
    module_built();
    let s = Subst::new();
    let bad = read("envoy/envoy.yaml").replace("\"format\": \"otlp\"", "\"format\": \"xml\"");
    let err = s.validate("bad.yaml", &bad).unwrap_err().to_string();
    assert!(err.contains("audit.format"), "{err}");
}

#[test]
fn deployment_filter_blocks_match_the_rendered_one() {
    let reference = rendered_filter_shape();
    assert_eq!(reference["root_id"], "mcptrail");
    assert_eq!(reference["vm_config"]["vm_id"], "mcptrail");
    assert_eq!(reference["vm_config"]["runtime"], "envoy.wasm.runtime.v8");
    assert_eq!(reference["allow_on_headers_stop_iteration"], true);
    for file in ["envoy/envoy.yaml", "envoy/compose.yaml"] {
        let config = mcptrail_filter(file, &yaml(&read(file)));
        assert_eq!(
            filter_shape(&config),
            reference,
            "{file} drifted from render()"
        );
        assert_eq!(
            config["vm_config"]["code"]["local"]["filename"], "/etc/envoy/mcptrail.wasm",
            "{file}"
        );
    }
    let (filter, _) = envoyfilter_patches();
    assert_eq!(filter["typed_config"]["@type"], WASM_FILTER);
    let config = &filter["typed_config"]["config"];
    assert_eq!(
        filter_shape(config),
        reference,
        "envoyfilter.yaml drifted from render()"
    );
    let sha = config["vm_config"]["code"]["remote"]["sha256"]
        .as_str()
        .unwrap_or_default();
    assert!(
        sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit()),
        "remote code needs a sha256: {sha:?}"
    );
    for wp in istio_docs("envoy/istio/wasmplugin.yaml", "WasmPlugin") {
        let spec = &wp["spec"];
        assert_eq!(spec["pluginName"], reference["root_id"], "{wp}");
        assert_eq!(spec["phase"], "AUTHN", "{wp}");
        assert_eq!(spec["failStrategy"], DEPLOY_FAILURE_POLICY, "{wp}");
    }
}

// ---------------------------------------------------------------- Istio

#[test]
fn istio_manifests_match_the_crd_schemas() {
    let script = repo("scripts/validate-istio.mjs");
    let files: Vec<PathBuf> = ISTIO_MANIFESTS.iter().map(|f| repo(f)).collect();
    let (ok, out) = run(Command::new(node_bin()).arg(&script).args(&files));
    assert!(ok, "{out}");
    for kind in [
        "WasmPlugin/mcptrail:",
        "WasmPlugin/mcptrail-gateway:",
        "EnvoyFilter/mcptrail:",
    ] {
        assert!(out.contains(&format!("{kind} valid")), "{kind}: {out}");
    }

    // The schemas are really applied: Envoy's spelling of the failure policy, a wrong phase,
    // an upper-case sha256 and a misspelled patch operation are all refused.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    for (file, from, to) in [
        (
            ISTIO_MANIFESTS[0],
            "failStrategy: FAIL_RELOAD",
            "failStrategy: FAIL_CLOSED",
        ),
        (ISTIO_MANIFESTS[0], "phase: AUTHN", "phase: AUTHENTICATION"),
        (ISTIO_MANIFESTS[0], "sha256: \"0000", "sha256: \"AAAA"),
        (
            ISTIO_MANIFESTS[1],
            "operation: INSERT_BEFORE",
            "operation: INSERT_BEFOR",
        ),
    ] {
        let text = read(file);
        assert!(text.contains(from), "{file}: {from}");
        std::fs::write(&bad, text.replacen(from, to, 1)).unwrap();
        let (ok, out) = run(Command::new(node_bin()).arg(&script).arg(&bad));
        assert!(!ok && out.contains("INVALID"), "{to} accepted: {out}");
    }
}

#[test]
fn istio_plugin_configs_are_accepted_by_the_filter() {
    module_built();
    let s = Subst::new();
    let plugins = istio_docs("envoy/istio/wasmplugin.yaml", "WasmPlugin");
    assert_eq!(plugins.len(), 2);
    for wp in &plugins {
        let name = wp["metadata"]["name"].as_str().unwrap();
        let url = wp["spec"]["url"].as_str().unwrap();
        assert!(
            url.starts_with("oci://") || url.starts_with("https://"),
            "{name}: {url}"
        );
        // Istio passes pluginConfig to the filter as its JSON text.
        let config = wp["spec"]["pluginConfig"].clone();
        let audit_cluster = config["audit"]["cluster"].as_str().unwrap_or_default();
        assert!(
            audit_cluster.starts_with("outbound|") && audit_cluster.contains("||"),
            "{name}: Istio cluster names are outbound|PORT||HOST: {audit_cluster}"
        );
        let out = s
            .validate(&format!("{name}.yaml"), &envoy::render(&spec_for(config)))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(out.contains("OK"), "{out}");
    }
    let https = plugins
        .iter()
        .find(|p| p["spec"]["url"].as_str().unwrap().starts_with("https://"))
        .expect("an https WasmPlugin");
    assert!(
        https["spec"]["sha256"].is_string(),
        "https url needs sha256"
    );

    // The EnvoyFilter's patches, in a bootstrap as Istio would place them: as they are (the
    // remote code source included), then with the module made local so `on_configure` runs.
    let (filter, cluster) = envoyfilter_patches();
    let sidecar = plugins
        .iter()
        .find(|p| p["metadata"]["name"] == "mcptrail")
        .unwrap();
    let ef_config = plugin_config("envoyfilter.yaml", &filter["typed_config"]["config"]);
    assert_eq!(
        ef_config, sidecar["spec"]["pluginConfig"],
        "the EnvoyFilter's configuration and the sidecar WasmPlugin's pluginConfig must agree"
    );
    let mut bootstrap = yaml(&envoy::render(&spec_for(ef_config)));
    {
        let hcm = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
            ["typed_config"]
            .as_object_mut()
            .unwrap();
        let list = hcm["http_filters"].as_array_mut().unwrap();
        let i = list
            .iter()
            .position(|f| f["typed_config"]["@type"] == WASM_FILTER)
            .unwrap();
        list[i] = filter.clone();
    }
    bootstrap["static_resources"]["clusters"]
        .as_array_mut()
        .unwrap()
        .push(cluster);
    let out = s
        .validate("envoyfilter-remote.yaml", &bootstrap.to_string())
        .unwrap();
    assert!(out.contains("OK"), "{out}");
    let local = bootstrap.to_string().replace(
        &filter["typed_config"]["config"]["vm_config"]["code"].to_string(),
        &json!({"local": {"filename": "/etc/envoy/mcptrail.wasm"}}).to_string(),
    );
    assert_ne!(local, bootstrap.to_string());
    let bad = local.replace("\\\"otlp\\\"", "\\\"xml\\\"");
    assert_ne!(bad, local);
    let out = s.validate("envoyfilter-local.yaml", &local).unwrap();
    assert!(out.contains("OK"), "{out}");
    let err = s
        .validate("envoyfilter-bad.yaml", &bad)
        .unwrap_err()
        .to_string();
    assert!(err.contains("audit.format"), "{err}");
}

// ---------------------------------------------------------------- docker compose

fn envoy_version() -> String {
    read("scripts/setup.sh")
        .lines()
        .find_map(|l| l.strip_prefix("ENVOY_VERSION="))
        .expect("ENVOY_VERSION in setup.sh")
        .trim()
        .to_string()
}

#[test]
fn compose_file_matches_the_compose_spec_schema() {
    let bin = envoy::tools_dir().join("venv/bin/check-jsonschema");
    let (ok, out) = run(Command::new(&bin)
        .args(["--builtin-schema", "vendor.compose-spec"])
        .arg(repo("docker-compose.yml")));
    assert!(ok, "{out}");

    // And the schema is applied: a wrong depends_on condition is refused.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("docker-compose.yml");
    std::fs::write(
        &bad,
        read("docker-compose.yml").replacen("service_healthy", "service_ready", 1),
    )
    .unwrap();
    let (ok, out) = run(Command::new(&bin)
        .args(["--builtin-schema", "vendor.compose-spec"])
        .arg(&bad));
    assert!(!ok, "{out}");
}

/// Bind mounts of a service: (host path, container path).
fn mounts(service: &Value) -> Vec<(String, String)> {
    service["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str())
        .filter_map(|v| {
            let mut parts = v.split(':');
            Some((parts.next()?.to_string(), parts.next()?.to_string()))
        })
        .collect()
}

#[test]
fn compose_stack_is_wired_together() {
    let compose = yaml(&read("docker-compose.yml"));
    let services = compose["services"].as_object().unwrap();

    // Envoy: the official image at the version the tests run, with this repo's config and
    // the built module mounted where the config expects them.
    let envoy_svc = &services["envoy"];
    assert_eq!(
        envoy_svc["image"],
        format!("envoyproxy/envoy:v{}", envoy_version())
    );
    let m = mounts(envoy_svc);
    assert!(m.contains(&(
        "./envoy/compose.yaml".into(),
        "/etc/envoy/envoy.yaml".into()
    )));
    assert!(m.contains(&(
        "./target/wasm32-wasip1/release/mcptrail.wasm".into(),
        "/etc/envoy/mcptrail.wasm".into()
    )));
    for (svc, _) in services.iter() {
        for (host, _) in mounts(&services[svc]) {
            if host.starts_with("./") && !host.starts_with("./target/") {
                assert!(repo(&host[2..]).exists(), "{svc}: {host} is missing");
            }
        }
    }

    // Every upstream of the compose Envoy is a compose service, on a port it serves.
    let envoy_cfg = yaml(&read("envoy/compose.yaml"));
    let mut upstreams = std::collections::HashMap::new();
    for c in envoy_cfg["static_resources"]["clusters"]
        .as_array()
        .unwrap()
    {
        let sa = &c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
            ["socket_address"];
        let host = sa["address"].as_str().unwrap().to_string();
        assert!(
            services.contains_key(&host),
            "cluster {}: {host}",
            c["name"]
        );
        assert_eq!(c["type"], "STRICT_DNS", "{}", c["name"]);
        upstreams.insert(
            c["name"].as_str().unwrap().to_string(),
            (host, sa["port_value"].as_u64().unwrap()),
        );
    }
    let plugin = plugin_config(
        "envoy/compose.yaml",
        &mcptrail_filter("envoy/compose.yaml", &envoy_cfg),
    );

    // Audit: OTLP to the collector's OTLP/HTTP receiver, which writes to the audit volume.
    let audit = &plugin["audit"];
    assert_eq!(audit["format"], "otlp");
    assert_eq!(audit["path"], "/v1/logs");
    let (host, port) = &upstreams[audit["cluster"].as_str().unwrap()];
    assert_eq!(host, "otel-collector");
    assert_eq!(audit["authority"], format!("{host}:{port}"));
    let otel = yaml(&read("deploy/compose/otelcol.yaml"));
    let endpoint = otel["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
        .as_str()
        .unwrap();
    assert_eq!(endpoint, format!("0.0.0.0:{port}"));
    let logs = &otel["service"]["pipelines"]["logs"];
    assert!(logs["receivers"]
        .as_array()
        .unwrap()
        .contains(&json!("otlp")));
    assert!(logs["exporters"]
        .as_array()
        .unwrap()
        .contains(&json!("file")));
    let file = otel["exporters"]["file"]["path"].as_str().unwrap();
    let collector = &services["otel-collector"];
    assert!(
        collector["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .any(|v| v.starts_with("audit:") && file.starts_with(&v["audit:".len()..])),
        "the file exporter writes {file}, which must be on the audit volume"
    );
    assert!(compose["volumes"]
        .as_object()
        .unwrap()
        .contains_key("audit"));
    assert!(mounts(collector).contains(&(
        "./deploy/compose/otelcol.yaml".into(),
        "/etc/otelcol-contrib/config.yaml".into()
    )));
    let script = read("scripts/compose-audit.sh");
    assert!(script.contains(file), "compose-audit.sh must read {file}");
    assert!(script.contains(audit["hmac_key"].as_str().unwrap()));

    // Auth: the issuer is Keycloak's public URL and realm; its JWKS comes through the
    // keycloak service; tokens of the realm's client carry the audience the filter wants.
    let provider = &plugin["auth"]["providers"][0];
    let realm = yaml(&read("deploy/compose/realm.json"));
    let kc_env = &services["keycloak"]["environment"];
    let issuer = format!(
        "{}/realms/{}",
        kc_env["KC_HOSTNAME"].as_str().unwrap(),
        realm["realm"].as_str().unwrap()
    );
    assert_eq!(provider["issuer"], issuer);
    assert!(provider["jwks_uri"].as_str().unwrap().starts_with(&issuer));
    assert_eq!(
        upstreams[provider["jwks_cluster"].as_str().unwrap()].0,
        "keycloak"
    );
    let client = &realm["clients"][0];
    let audience = client["protocolMappers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["protocolMapper"] == "oidc-audience-mapper")
        .expect("an audience mapper")["config"]["included.custom.audience"]
        .clone();
    assert!(provider["audiences"]
        .as_array()
        .unwrap()
        .contains(&audience));
    let token_script = read("scripts/compose-token.sh");
    assert!(token_script.contains(&format!(
        "client_id={}",
        client["clientId"].as_str().unwrap()
    )));
    assert!(token_script.contains(&format!("/realms/{}/", realm["realm"].as_str().unwrap())));

    // The MCP server is the one the compose Envoy routes to.
    let (host, port) = &upstreams["mcp_server"];
    assert_eq!(host, "mcp-server");
    assert_eq!(
        services["mcp-server"]["environment"]["PORT"],
        port.to_string()
    );

    // Approvals: the filter asks the `approvals` service with one of its API keys.
    let named_volumes = compose["volumes"].as_object().unwrap();
    let approvals = &plugin["approvals"];
    let (host, port) = &upstreams[approvals["cluster"].as_str().unwrap()];
    assert_eq!(host, "approvals");
    assert_eq!(approvals["authority"], format!("{host}:{port}"));
    let svc = &services["approvals"];
    let cmd = command(svc);
    assert_eq!(cmd[0], "approvals");
    assert_eq!(arg(&cmd, "--listen"), format!("0.0.0.0:{port}"));
    assert!(svc["ports"]
        .as_array()
        .unwrap()
        .contains(&json!(format!("127.0.0.1:{port}:{port}"))));
    let config_path = arg(&cmd, "--config");
    assert!(mounts(svc).contains(&("./deploy/compose/approvals.json".into(), config_path)));
    // Its database is on a named volume: decisions survive a restart.
    let db = arg(&cmd, "--db");
    assert!(
        mounts(svc)
            .iter()
            .any(|(vol, dir)| named_volumes.contains_key(vol) && db.starts_with(&format!("{dir}/"))),
        "{db} must be on a named volume"
    );
    let acfg = mcptrail_cli::approvals::Config::parse(&read("deploy/compose/approvals.json"))
        .expect("deploy/compose/approvals.json");
    assert!(acfg
        .api_keys
        .iter()
        .any(|k| approvals["headers"]["x-api-key"] == k.as_str()));
    assert_eq!(acfg.public_url, format!("http://localhost:{port}"));
    assert!(acfg.audiences.contains(&acfg.public_url));
    // Approvers are Keycloak users named as the filter names callers (nobody decides their own
    // request: same issuer and subject).
    assert_eq!(provider["issuer"], acfg.issuer.as_str());
    assert_eq!(provider["claims"]["subject"], acfg.subject_claim.as_str());
    assert_eq!(provider["claims"]["groups"], acfg.groups_claim.as_str());
    assert!(realm["groups"].as_array().unwrap().iter().any(|g| acfg
        .approver_groups
        .contains(&g["name"].as_str().unwrap().to_string())));
    // The service reaches Keycloak by its service name; the browser by KC_HOSTNAME.
    let (kc_host, kc_port) = &upstreams["keycloak"];
    let internal = format!(
        "http://{kc_host}:{kc_port}/realms/{}",
        realm["realm"].as_str().unwrap()
    );
    assert!(acfg
        .jwks_uri
        .as_deref()
        .unwrap()
        .starts_with(&format!("{internal}/")));
    let oidc = acfg.oidc.as_ref().expect("sign-in configured");
    assert_eq!(
        oidc.discovery_url(&acfg.issuer),
        format!("{internal}/.well-known/openid-configuration")
    );
    // Its Keycloak client: public, code flow with PKCE S256, redirected to the page's callback;
    // access tokens carry the page as audience and the claims the service reads.
    let page_client = realm["clients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["clientId"] == oidc.client_id.as_str())
        .expect("the approvals client in realm.json");
    assert_eq!(page_client["publicClient"], true);
    assert_eq!(page_client["standardFlowEnabled"], true);
    assert_eq!(
        page_client["attributes"]["pkce.code.challenge.method"],
        "S256"
    );
    assert!(page_client["redirectUris"]
        .as_array()
        .unwrap()
        .contains(&json!(format!("{}/callback", acfg.public_url))));
    let mapper = |kind: &str, claim: &str| {
        page_client["protocolMappers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["protocolMapper"] == kind && m["config"]["claim.name"] == claim)
            .map(|m| m["config"]["access.token.claim"] == "true")
    };
    assert_eq!(
        mapper("oidc-group-membership-mapper", &acfg.groups_claim),
        Some(true)
    );
    assert_eq!(
        mapper("oidc-usermodel-property-mapper", &acfg.subject_claim),
        Some(true)
    );
    let page_audience = page_client["protocolMappers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["protocolMapper"] == "oidc-audience-mapper")
        .expect("an audience mapper")["config"]["included.custom.audience"]
        .clone();
    assert!(acfg.audiences.iter().any(|a| page_audience == a.as_str()));

    // Its decisions: NDJSON to `collector` (mcptrail collect), sealed and checked with the
    // stack's demo key, written to the audit volume where compose-audit.sh reads them.
    let a_audit = acfg.audit.as_ref().expect("approvals audit");
    let svc = &services["collector"];
    let cmd = command(svc);
    assert_eq!(cmd[0], "collect");
    let listen_port = arg(&cmd, "--listen")
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(
        a_audit.url,
        format!("http://collector:{listen_port}/ingest")
    );
    assert_eq!(a_audit.hmac_key.as_deref(), audit["hmac_key"].as_str());
    assert_eq!(arg(&cmd, "--hmac-key"), a_audit.hmac_key.clone().unwrap());
    let out = arg(&cmd, "--out");
    assert!(
        svc["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .any(|v| v.starts_with("audit:") && out.starts_with(&v["audit:".len()..])),
        "the collector writes {out}, which must be on the audit volume"
    );
    assert!(script.contains(&out), "compose-audit.sh must read {out}");
    assert!(script.contains("collector:"));

    // Both services run the CLI image, built with the toolchain the workspace pins, on one
    // Debian release in both stages.
    for name in ["approvals", "collector"] {
        let build = &services[name]["build"];
        assert_eq!(build["context"], ".", "{name}");
        assert_eq!(
            build["dockerfile"], "deploy/compose/mcptrail.Dockerfile",
            "{name}"
        );
    }
    let dockerfile = read("deploy/compose/mcptrail.Dockerfile");
    let channel = read("rust-toolchain.toml")
        .lines()
        .find_map(|l| l.strip_prefix("channel = "))
        .expect("channel in rust-toolchain.toml")
        .trim_matches('"')
        .to_string();
    let froms: Vec<&str> = dockerfile
        .lines()
        .filter_map(|l| l.strip_prefix("FROM "))
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(froms.len(), 2, "{froms:?}");
    let debian = froms[0]
        .strip_prefix(&format!("rust:{channel}-"))
        .unwrap_or_else(|| panic!("build stage {} is not rust:{channel}-<debian>", froms[0]));
    assert_eq!(froms[1], format!("debian:{debian}-slim"));
    assert!(dockerfile.contains("cargo build --release --locked -p mcptrail-cli"));
    // Its own ignore file: the root .dockerignore admits only the module (root Dockerfile).
    let ignore = read("deploy/compose/mcptrail.Dockerfile.dockerignore");
    for member in ["filter", "cli", "integration"] {
        assert!(
            ignore.lines().any(|l| l == format!("!{member}/")),
            "{member}"
        );
    }
    for out in ["**/target", "**/node_modules"] {
        assert!(ignore.lines().any(|l| l == out), "{out}");
    }
}

/// The realm representation fields `deploy/compose/realm.json` may use (Keycloak's
/// `RealmRepresentation`, admin REST API reference): a misspelt key is ignored by the import,
/// silently.
const REALM_KEYS: [&str; 13] = [
    "realm",
    "enabled",
    "sslRequired",
    "accessTokenLifespan",
    "groups",
    "users",
    "clients",
    "clientScopes",
    "defaultDefaultClientScopes",
    "defaultOptionalClientScopes",
    "components",
    "clientProfiles",
    "clientPolicies",
];
const REGISTRATION_POLICY: &str =
    "org.keycloak.services.clientregistration.policy.ClientRegistrationPolicy";

/// The compose realm lets a stock MCP client register itself and sign in, and its tokens are
/// ones the compose filter accepts. Static: Keycloak does not run here (no Docker), so this
/// checks the realm file against what the filter reads, not Keycloak's behaviour.
#[test]
fn compose_realm_serves_stock_mcp_clients() {
    let realm: Value = serde_json::from_str(&read("deploy/compose/realm.json")).expect("JSON");
    for key in realm.as_object().unwrap().keys() {
        assert!(
            REALM_KEYS.contains(&key.as_str()),
            "unknown realm key {key}"
        );
    }
    let envoy_cfg = yaml(&read("envoy/compose.yaml"));
    let plugin = plugin_config(
        "envoy/compose.yaml",
        &mcptrail_filter("envoy/compose.yaml", &envoy_cfg),
    );
    let provider = &plugin["auth"]["providers"][0];
    let claims = &provider["claims"];
    let resource = plugin["auth"]["resource_metadata"]["resource"]
        .as_str()
        .unwrap();
    assert!(provider["audiences"]
        .as_array()
        .unwrap()
        .contains(&json!(resource)));
    assert_eq!(
        plugin["auth"]["resource_metadata"]["authorization_servers"],
        json!([provider["issuer"]])
    );

    // The scopes are all defined here (a realm file with `clientScopes` gets none of
    // Keycloak's built-in ones), every default one exists, and `mcp` is a default one.
    let scopes = realm["clientScopes"].as_array().unwrap();
    let scope = |name: &str| {
        scopes
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("client scope {name}"))
    };
    let defaults = realm["defaultDefaultClientScopes"].as_array().unwrap();
    for name in defaults {
        let s = scope(name.as_str().unwrap());
        assert_eq!(s["protocol"], "openid-connect", "{name}");
    }
    // `sub` and the standard claims stay (the `basic` scope carries `sub` since Keycloak 25).
    for name in ["basic", "profile", "email", "mcp"] {
        assert!(defaults.contains(&json!(name)), "{name} is a default scope");
    }
    assert!(scope("basic")["protocolMappers"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["protocolMapper"] == "oidc-sub-mapper"));
    // offline_access is made by Keycloak at import when the file does not define it.
    assert!(scopes.iter().all(|s| s["name"] != "offline_access"));

    // The `mcp` scope: the resource as audience, and each claim the filter reads.
    let mappers = scope("mcp")["protocolMappers"].as_array().unwrap();
    let claim_of = |mapper: &str, claim: &str| {
        mappers
            .iter()
            .find(|m| m["protocolMapper"] == mapper && m["config"]["claim.name"] == claim)
            .unwrap_or_else(|| panic!("a {mapper} for {claim} in the mcp scope"))
    };
    let audience = mappers
        .iter()
        .find(|m| m["protocolMapper"] == "oidc-audience-mapper")
        .expect("an audience mapper in the mcp scope");
    assert_eq!(audience["config"]["included.custom.audience"], resource);
    assert_eq!(audience["config"]["access.token.claim"], "true");
    let groups = claim_of(
        "oidc-group-membership-mapper",
        claims["groups"].as_str().unwrap(),
    );
    assert_eq!(
        groups["config"]["full.path"], "false",
        "group names, not paths"
    );
    assert_eq!(groups["config"]["access.token.claim"], "true");
    for (claim, attribute) in [("subject", "username"), ("email", "email")] {
        let m = claim_of(
            "oidc-usermodel-property-mapper",
            claims[claim].as_str().unwrap(),
        );
        assert_eq!(m["config"]["user.attribute"], attribute, "{claim}");
        assert_eq!(m["config"]["access.token.claim"], "true", "{claim}");
    }
    // `azp` (the filter's client_id claim) is in every Keycloak access token.
    assert_eq!(claims["client_id"], "azp");

    // The named clients list their scopes (their own mappers give the same claims; `mcp` on
    // top would double them), PKCE S256.
    for c in realm["clients"].as_array().unwrap() {
        let own = c["defaultClientScopes"].as_array().unwrap();
        for name in own {
            scope(name.as_str().unwrap());
        }
        assert_eq!(c["attributes"]["pkce.code.challenge.method"], "S256");
    }

    // Anonymous dynamic registration (RFC 7591, what MCP clients do): allowed for redirect
    // URIs on localhost / 127.0.0.1, whatever address the request comes from (Docker's port
    // mapping hides the host's), with consent asked, default scopes only, a cap on clients.
    let policies = realm["components"][REGISTRATION_POLICY].as_array().unwrap();
    let policy = |provider: &str, sub: &str| {
        policies
            .iter()
            .find(|p| p["providerId"] == provider && p["subType"] == sub)
            .unwrap_or_else(|| panic!("registration policy {provider} ({sub})"))
    };
    let trusted = &policy("trusted-hosts", "anonymous")["config"];
    let mut hosts: Vec<&str> = trusted["trusted-hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap())
        .collect();
    hosts.sort();
    assert_eq!(hosts, ["127.0.0.1", "localhost"]);
    assert_eq!(trusted["client-uris-must-match"], json!(["true"]));
    assert_eq!(
        trusted["host-sending-registration-request-must-match"],
        json!(["false"])
    );
    policy("consent-required", "anonymous");
    policy("max-clients", "anonymous");
    for sub in ["anonymous", "authenticated"] {
        assert_eq!(
            policy("allowed-client-templates", sub)["config"]["allow-default-scopes"],
            json!(["true"])
        );
        policy("allowed-protocol-mappers", sub);
    }
    for p in policies {
        for key in ["name", "providerId", "subType", "config"] {
            assert!(p.get(key).is_some(), "{key} in {p}");
        }
        for (k, v) in p["config"].as_object().unwrap() {
            assert!(v.is_array(), "component config values are lists: {k}");
        }
    }

    // PKCE S256 for every client, registered ones included (client policy, auto-configured).
    let profiles = realm["clientProfiles"]["profiles"].as_array().unwrap();
    let pkce = profiles
        .iter()
        .find(|p| {
            p["executors"].as_array().unwrap().iter().any(|e| {
                e["executor"] == "pkce-enforcer" && e["configuration"]["auto-configure"] == "true"
            })
        })
        .expect("a client profile with pkce-enforcer");
    let policy = realm["clientPolicies"]["policies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["profiles"].as_array().unwrap().contains(&pkce["name"]))
        .expect("a client policy using the PKCE profile");
    assert_eq!(policy["enabled"], true);
    assert_eq!(
        policy["conditions"],
        json!([{ "condition": "any-client", "configuration": {} }])
    );

    // The demo users of the dev stack, in their groups.
    for (user, group) in [("alice", "eng"), ("bob", "admins"), ("sam", "support")] {
        let u = realm["users"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["username"] == user)
            .unwrap_or_else(|| panic!("user {user}"));
        assert_eq!(u["groups"], json!([format!("/{group}")]), "{user}");
    }
}

/// A service's `command` (a list of strings).
fn command(service: &Value) -> Vec<String> {
    service["command"]
        .as_array()
        .expect("command as a list")
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

/// The value after `flag` in a command.
fn arg(cmd: &[String], flag: &str) -> String {
    let i = cmd
        .iter()
        .position(|a| a == flag)
        .unwrap_or_else(|| panic!("{flag} in {cmd:?}"));
    cmd[i + 1].clone()
}

// ---------------------------------------------------------------- OCI image

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Reads a blob named by a descriptor and checks its digest and size.
fn blob(layout: &Path, desc: &Value) -> Vec<u8> {
    let digest = desc["digest"].as_str().expect("digest");
    let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
    let data = std::fs::read(layout.join("blobs/sha256").join(hex)).expect("blob");
    assert_eq!(
        sha256_hex(&data),
        hex,
        "blob content does not match {digest}"
    );
    assert_eq!(desc["size"], data.len(), "size of {digest}");
    data
}

fn build_image(out: &Path) -> String {
    let (ok, text) = run(Command::new("python3")
        .arg(repo("scripts/oci-image.py"))
        .arg("--wasm")
        .arg(envoy::wasm_module())
        .arg("--out")
        .arg(out)
        .args(["--tag", "test"]));
    assert!(ok, "{text}");
    text
}

#[test]
fn oci_image_layout_is_well_formed() {
    module_built();
    let module = std::fs::read(envoy::wasm_module()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let printed = build_image(dir.path());
    let layout = dir.path().join("mcptrail");

    let oci_layout: Value =
        serde_json::from_slice(&std::fs::read(layout.join("oci-layout")).unwrap()).unwrap();
    assert_eq!(oci_layout["imageLayoutVersion"], "1.0.0");
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 1);
    let desc = &manifests[0];
    assert_eq!(
        desc["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        desc["annotations"]["org.opencontainers.image.ref.name"],
        "test"
    );
    let manifest: Value = serde_json::from_slice(&blob(&layout, desc)).unwrap();
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(manifest["mediaType"], desc["mediaType"]);
    // The Wasm OCI image spec (what Istio's WasmPlugin pulls): this config media type and
    // exactly one layer, the module itself.
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.module.wasm.config.v1+json"
    );
    let config: Value = serde_json::from_slice(&blob(&layout, &manifest["config"])).unwrap();
    assert!(config.is_object());
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    assert_eq!(
        layers[0]["mediaType"],
        "application/vnd.module.wasm.content.layer.v1+wasm"
    );
    assert!(
        blob(&layout, &layers[0]) == module,
        "the layer is the module"
    );
    let blobs = std::fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .count();
    assert_eq!(blobs, 3, "manifest, config and layer, nothing else");
    assert!(
        printed.contains(desc["digest"].as_str().unwrap()),
        "{printed}"
    );
    assert!(printed.contains(&sha256_hex(&module)), "{printed}");

    // The archive holds the same files.
    let tar = std::fs::read(dir.path().join("mcptrail-test.oci.tar")).unwrap();
    let listing = run(Command::new("tar")
        .arg("tf")
        .arg(dir.path().join("mcptrail-test.oci.tar")))
    .1;
    for name in ["oci-layout", "index.json"] {
        assert!(listing.lines().any(|l| l == name), "{listing}");
    }
    assert!(tar.len() > module.len());

    // Same module, same digests.
    let again = tempfile::tempdir().unwrap();
    build_image(again.path());
    let index2 = std::fs::read(again.path().join("mcptrail/index.json")).unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&index2).unwrap()["manifests"][0]["digest"],
        desc["digest"]
    );
}

// ---------------------------------------------------------------- compose Envoy, for real

/// A JSON-RPC POST through Envoy; returns the session id header and the body (JSON or SSE).
async fn mcp_post(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    session: Option<&str>,
    body: Value,
) -> (u16, Option<String>, String) {
    let mut req = client
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
        .body(body.to_string());
    if let Some(s) = session {
        req = req.header("mcp-session-id", s);
    }
    let resp = req.send().await.expect("request through Envoy");
    let status = resp.status().as_u16();
    let sid = resp
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (status, sid, resp.text().await.unwrap_or_default())
}

/// `envoy/compose.yaml` as it is (plugin configuration untouched), with only the compose
/// service addresses pointed at local stand-ins: the real MCP server of the stack, the
/// project's collector in place of the OpenTelemetry Collector (it takes the same OTLP/HTTP
/// JSON), and a JWKS served where Keycloak serves it, for tokens shaped like Keycloak's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_envoy_config_records_a_tools_call_to_the_compose_mcp_server() {
    module_built();
    let text = read("envoy/compose.yaml");
    let envoy_cfg = yaml(&text);
    let plugin = plugin_config(
        "envoy/compose.yaml",
        &mcptrail_filter("envoy/compose.yaml", &envoy_cfg),
    );
    let hmac_key =
        mcptrail_cli::verify::decode_key(plugin["audit"]["hmac_key"].as_str().unwrap()).unwrap();
    let provider = &plugin["auth"]["providers"][0];

    // The compose stack's MCP server (`@modelcontextprotocol/server-everything`).
    let server = mcptrail_integration::everything::Everything::start().unwrap();

    let dir = tempfile::tempdir().unwrap();
    let audit_file = dir.path().join("audit.ndjson");
    let collector = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let inner_url = format!("http://{}", collector.local_addr().unwrap());
    // Where the approval service ships (NDJSON, straight to the collector).
    let collector_url = inner_url.clone();
    let app = mcptrail_cli::collector::router(&mcptrail_cli::collector::Options {
        out: audit_file.clone(),
        hmac_key: Some(hmac_key.clone()),
        echo: false,
    })
    .await
    .unwrap();
    tokio::spawn(async move { axum::serve(collector, app).await });
    // A tap in front of it keeps each OTLP body as shipped, to parse with the official protos.
    let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let tap = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector_port = tap.local_addr().unwrap().port();
    let tap_app = {
        let bodies = std::sync::Arc::clone(&bodies);
        let client = reqwest::Client::new();
        axum::Router::new().fallback(
            move |uri: axum::http::Uri, headers: axum::http::HeaderMap, body: String| {
                let bodies = std::sync::Arc::clone(&bodies);
                let client = client.clone();
                let url = format!("{inner_url}{uri}");
                async move {
                    let ct = headers
                        .get("content-type")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string();
                    if let Ok(mut b) = bodies.lock() {
                        b.push(body.clone());
                    }
                    let status = match client
                        .post(url)
                        .header("content-type", ct)
                        .body(body)
                        .send()
                        .await
                    {
                        Ok(r) => r.status().as_u16(),
                        Err(_) => 502,
                    };
                    axum::http::StatusCode::from_u16(status)
                        .unwrap_or(axum::http::StatusCode::BAD_GATEWAY)
                }
            },
        )
    };
    tokio::spawn(async move { axum::serve(tap, tap_app).await });

    // Keycloak's JWKS path on a local listener, and a token with Keycloak's claims.
    let idp = mcptrail_integration::DevIssuer::start(loopback(0), None)
        .await
        .unwrap();
    let jwks = mcptrail_cli::issuer::jwks(&idp.key);
    let jwks_path = provider["jwks_uri"]
        .as_str()
        .unwrap()
        .splitn(4, '/')
        .nth(3)
        .map(|p| format!("/{p}"))
        .unwrap();
    let kc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let kc_port = kc.local_addr().unwrap().port();
    let kc_app = axum::Router::new().route(
        &jwks_path,
        axum::routing::get(move || {
            let j = jwks.clone();
            async move { axum::Json(j) }
        }),
    );
    tokio::spawn(async move { axum::serve(kc, kc_app).await });
    let token = {
        use jwt_simple::prelude::*;
        let claims = Claims::with_custom_claims(
            json!({
                "preferred_username": "alice",
                "email": "alice@example.com",
                "groups": ["eng"],
                "azp": "mcp-cli",
            }),
            Duration::from_secs(600),
        )
        .with_issuer(provider["issuer"].as_str().unwrap())
        .with_audience(provider["audiences"][0].as_str().unwrap())
        .with_subject("0b7c5e5a-user-id");
        idp.key.sign(claims).unwrap()
    };

    // The compose approval service, from deploy/compose/approvals.json as it is but for the
    // compose hostnames: Keycloak's JWKS from the stand-in above, decisions to the collector.
    let approvals_cfg = mcptrail_cli::approvals::Config::parse(
        &read("deploy/compose/approvals.json")
            .replace(
                "http://keycloak:8080",
                &format!("http://127.0.0.1:{kc_port}"),
            )
            .replace("http://collector:9411", &collector_url),
    )
    .unwrap();
    let approvals = mcptrail_cli::approvals::Service::start(
        approvals_cfg.clone(),
        dir.path().join("approvals.db").to_str().unwrap(),
    )
    .await
    .unwrap();
    let approvals_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let approvals_port = approvals_listener.local_addr().unwrap().port();
    let approvals_url = format!("http://127.0.0.1:{approvals_port}");
    let approvals_app = approvals.router();
    tokio::spawn(async move { axum::serve(approvals_listener, approvals_app).await });
    // Tokens shaped like Keycloak's for the realm's clients: `sub` is Keycloak's user id,
    // the name is in preferred_username.
    let kc_token = |user: &str, groups: &[&str], client: &str, audience: &str| {
        use jwt_simple::prelude::*;
        let claims = Claims::with_custom_claims(
            json!({"preferred_username": user, "groups": groups, "azp": client}),
            Duration::from_secs(600),
        )
        .with_issuer(provider["issuer"].as_str().unwrap())
        .with_audience(audience)
        .with_subject(format!("{user}-keycloak-user-id"));
        idp.key.sign(claims).unwrap()
    };

    let local = text
        .replace(
            "{ address: mcp-server, port_value: 3001 }",
            &format!(
                "{{ address: 127.0.0.1, port_value: {} }}",
                server.addr.port()
            ),
        )
        .replace(
            "{ address: otel-collector, port_value: 4318 }",
            &format!("{{ address: 127.0.0.1, port_value: {collector_port} }}"),
        )
        .replace(
            "{ address: keycloak, port_value: 8080 }",
            &format!("{{ address: 127.0.0.1, port_value: {kc_port} }}"),
        )
        .replace(
            "{ address: approvals, port_value: 8787 }",
            &format!("{{ address: 127.0.0.1, port_value: {approvals_port} }}"),
        )
        .replace(
            "{ address: 0.0.0.0, port_value: 10000 }",
            "{ address: 127.0.0.1, port_value: 0 }",
        )
        .replace(
            "{ address: 0.0.0.0, port_value: 9901 }",
            "{ address: 127.0.0.1, port_value: 0 }",
        );
    assert!(
        !local.contains("0.0.0.0"),
        "every compose address was replaced"
    );
    let s = Subst::new();
    let envoy = tokio::task::block_in_place(|| {
        mcptrail_integration::Envoy::start_yaml(&s.apply(&local), 1)
    })
    .unwrap();
    let url = format!("{}/mcp", envoy.url());
    let client = reqwest::Client::new();

    // No token: the MCP challenge.
    let r = client.post(&url).body("{}").send().await.unwrap();
    assert_eq!(r.status(), 401);

    let (status, sid, body) = mcp_post(
        &client,
        &url,
        &token,
        None,
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "deploy-test", "version": "1"}}}),
    )
    .await;
    assert_eq!(status, 200, "{body}\n{}", envoy.log());
    let sid = sid.expect("a session id from server-everything");
    let sid = Some(sid.as_str());
    let (status, _, _) = mcp_post(
        &client,
        &url,
        &token,
        sid,
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;
    assert!(status == 202 || status == 200, "{status}");
    let (status, _, body) = mcp_post(
        &client,
        &url,
        &token,
        sid,
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
               "params": {"name": "echo", "arguments": {"message": "hello from compose"}}}),
    )
    .await;
    assert_eq!(status, 200);
    assert!(body.contains("hello from compose"), "{body}");
    // The compose policy keeps get-env (it prints the server's environment) for admins.
    let (_, _, body) = mcp_post(
        &client,
        &url,
        &token,
        sid,
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
               "params": {"name": "get-env", "arguments": {}}}),
    )
    .await;
    assert!(body.contains("-32003"), "get-env must be refused: {body}");

    // The review rule: gzip-file-as-resource waits for an admin on the approvals page.
    let gzip = |id: u32| {
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
               "params": {"name": "gzip-file-as-resource", "arguments": {
                   "name": "hello.gz", "data": "data:text/plain;base64,aGVsbG8gY29tcG9zZQ==",
                   "outputType": "resource"}}})
    };
    let (status, _, body) = mcp_post(&client, &url, &token, sid, gzip(4)).await;
    assert_eq!(status, 200);
    assert!(body.contains("-32042"), "pending approval expected: {body}");
    let page = format!("{}/requests/", approvals_cfg.public_url);
    let id: String = body[body.find(&page).expect("the request's URL on the page") + page.len()..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect();
    assert!(id.starts_with("apr_"), "{id}");
    let decide = |token: String, id: String| {
        let client = client.clone();
        let url = format!("{approvals_url}/api/requests/{id}/approve");
        async move {
            client
                .post(url)
                .bearer_auth(token)
                .json(&json!({"mode": "once"}))
                .send()
                .await
                .unwrap()
        }
    };
    let page_aud = approvals_cfg.audiences[0].clone();
    // alice (eng) is no approver.
    let r = decide(
        kc_token("alice", &["eng"], "mcptrail-approvals", &page_aud),
        id.clone(),
    )
    .await;
    assert_eq!(r.status(), 403);
    // bob (admins) cannot approve his own request: the service names approvers as the filter
    // names callers, although Keycloak's `sub` is a user id.
    let bob_mcp = kc_token(
        "bob",
        &["admins"],
        "mcp-cli",
        provider["audiences"][0].as_str().unwrap(),
    );
    let (status, bob_sid, _) = mcp_post(
        &client,
        &url,
        &bob_mcp,
        None,
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "deploy-test", "version": "1"}}}),
    )
    .await;
    assert_eq!(status, 200);
    let (_, _, body) = mcp_post(&client, &url, &bob_mcp, bob_sid.as_deref(), gzip(5)).await;
    let bob_id: String = body[body.find(&page).expect("bob's request URL") + page.len()..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect();
    let bob_page = kc_token("bob", &["admins"], "mcptrail-approvals", &page_aud);
    let r = decide(bob_page.clone(), bob_id).await;
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("own_request"));
    // bob approves alice's call once: it goes through.
    let r = decide(bob_page, id.clone()).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    let (status, _, body) = mcp_post(&client, &url, &token, sid, gzip(6)).await;
    assert_eq!(status, 200);
    assert!(
        body.contains("application/gzip"),
        "approved call must reach the server: {body}"
    );
    // The decision record is shipped to the collector (checked with the same key below).
    approvals
        .shutdown(std::time::Duration::from_secs(5))
        .await
        .unwrap();

    // The records arrive (OTLP/HTTP, as the compose collector would get them) and verify.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let records = loop {
        let recs: Vec<Value> = std::fs::read_to_string(&audit_file)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let echo = recs.iter().any(|r| {
            r["kind"] == "command" && r["mcp"]["tool"] == "echo" && r["outcome"]["status"] == "ok"
        });
        let denied = recs
            .iter()
            .any(|r| r["kind"] == "policy.denied" && r["mcp"]["tool"] == "get-env");
        let approved = recs.iter().any(|r| {
            r["kind"] == "command"
                && r["mcp"]["tool"] == "gzip-file-as-resource"
                && r["approval"]["approved_by"] == "bob"
        });
        let decided = recs.iter().any(|r| {
            r["kind"] == "approval.decided"
                && r["approval"]["id"] == id.as_str()
                && r["identity"]["sub"] == "bob"
        });
        if echo && denied && approved && decided {
            break recs;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "records missing; got {recs:#?}\n{}",
            envoy.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let echo = records
        .iter()
        .find(|r| r["kind"] == "command" && r["mcp"]["tool"] == "echo")
        .unwrap();
    assert_eq!(echo["identity"]["sub"], "alice", "{echo}");
    assert_eq!(echo["identity"]["groups"], json!(["eng"]), "{echo}");
    assert_eq!(echo["mcp"]["arguments"]["message"], "hello from compose");
    let report = mcptrail_cli::verify::verify_files(Some(hmac_key), &[&audit_file]).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);

    // What the OpenTelemetry Collector would receive parses as OTLP, strictly.
    let raw = dir.path().join("otlp.jsonl");
    let shipped = bodies.lock().unwrap().clone();
    assert!(!shipped.is_empty());
    let lines: Vec<String> = shipped
        .iter()
        .map(|b| serde_json::from_str::<Value>(b).unwrap().to_string())
        .collect();
    std::fs::write(&raw, lines.join("\n") + "\n").unwrap();
    let (ok, out) = run(Command::new(envoy::tools_dir().join("venv/bin/python"))
        .arg(repo("scripts/check-otlp.py"))
        .arg(&raw));
    assert!(ok, "{out}");
}
