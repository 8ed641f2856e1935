//! Envoy accepts the rendered configuration (and runs `on_configure` on it); a bad plugin
//! configuration is refused, with one log line naming the key.

use mcptrail_integration::envoy::{self, loopback, EnvoySpec};
use mcptrail_integration::{base_plugin_config, Envoy};
use serde_json::json;

fn spec(plugin_config: serde_json::Value) -> EnvoySpec {
    EnvoySpec::mcp(plugin_config, loopback(9), loopback(9))
}

fn validate(plugin_config: serde_json::Value) -> anyhow::Result<String> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("envoy.yaml");
    std::fs::write(&path, envoy::render(&spec(plugin_config)))?;
    envoy::validate(&path)
}

#[test]
fn rendered_config_validates() {
    let out = validate(base_plugin_config()).unwrap();
    assert!(out.contains("OK"), "{out}");
}

#[test]
fn bad_plugin_config_is_refused_naming_the_key() {
    let mut c = base_plugin_config();
    c["audit"]["flush_interval_ms"] = json!("soon");
    let err = validate(c).unwrap_err().to_string();
    assert!(err.contains("audit.flush_interval_ms"), "{err}");
    let err = validate(json!({"audit": {"cluster": "c", "retries": 3}}))
        .unwrap_err()
        .to_string();
    assert!(err.contains("audit.retries"), "{err}");
    let err = validate(json!({})).unwrap_err().to_string();
    assert!(err.contains("missing field `audit`"), "{err}");
}

#[test]
fn bad_config_fails_envoy_start_with_the_log_line() {
    let mut c = base_plugin_config();
    c["audit"]["format"] = json!("xml");
    let err = Envoy::start(&spec(c), 1)
        .err()
        .expect("Envoy must refuse")
        .to_string();
    assert!(err.contains("audit.format"), "{err}");
}
