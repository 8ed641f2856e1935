//! OTLP/HTTP JSON logs encoding: one `logRecord` per audit record, the exact record line as
//! `body.stringValue` (so the chain still verifies) and the main fields as attributes.

use serde_json::{json, Value};

use super::record::{Kind, Record, Status};

/// What the OTLP encoding needs from a record besides its line.
#[derive(Debug, Clone, PartialEq)]
pub struct Meta {
    pub ts_ms: u64,
    pub severity: (u8, &'static str),
    pub attrs: Vec<(&'static str, Value)>,
}

impl Meta {
    /// Extracts the attributes, named after OpenTelemetry semantic conventions where they exist.
    pub fn of(record: &Record, ts_ms: u64) -> Meta {
        let mut attrs: Vec<(&'static str, Value)> = Vec::with_capacity(8);
        attrs.push((
            "event.name",
            json!(format!("mcptrail.{}", record.kind.as_str())),
        ));
        if let Some(mcp) = &record.mcp {
            if let Some(m) = &mcp.method {
                attrs.push(("mcp.method.name", json!(m)));
            }
            if let Some(t) = &mcp.tool {
                attrs.push(("gen_ai.tool.name", json!(t)));
            }
            if let Some(v) = &mcp.protocol_version {
                attrs.push(("mcp.protocol.version", json!(v)));
            }
        }
        if let Some(s) = &record.session {
            attrs.push(("mcp.session.id", json!(s)));
        }
        if let Some(sub) = record.identity.as_ref().and_then(|i| i.sub.as_ref()) {
            attrs.push(("user.id", json!(sub)));
        }
        if let Some(addr) = record.source.as_ref().and_then(|s| s.address.as_ref()) {
            attrs.push(("client.address", json!(addr)));
        }
        if let Some(o) = &record.outcome {
            if let Some(code) = o.http_status {
                attrs.push(("http.response.status_code", json!(code)));
            }
            attrs.push((
                "mcptrail.outcome",
                serde_json::to_value(o.status).unwrap_or(Value::Null),
            ));
        }
        let denied = matches!(
            record.kind,
            Kind::AuthDenied | Kind::PolicyDenied | Kind::DecodeError | Kind::AuditDropped
        ) || record.outcome.as_ref().is_some_and(|o| {
            matches!(
                o.status,
                Status::Error | Status::UpstreamError | Status::Aborted
            )
        });
        Meta {
            ts_ms,
            severity: if denied { (13, "WARN") } else { (9, "INFO") },
            attrs,
        }
    }
}

fn attr_value(v: &Value) -> Value {
    match v {
        Value::Number(n) if n.is_i64() || n.is_u64() => json!({ "intValue": n.to_string() }),
        Value::Number(n) => json!({ "doubleValue": n }),
        Value::Bool(b) => json!({ "boolValue": b }),
        Value::String(s) => json!({ "stringValue": s }),
        other => json!({ "stringValue": other.to_string() }),
    }
}

/// Encodes `(line, meta)` pairs as one OTLP `ExportLogsServiceRequest` in JSON.
pub fn encode<'a>(stream: &str, entries: impl Iterator<Item = (&'a str, &'a Meta)>) -> Vec<u8> {
    let records: Vec<Value> = entries
        .map(|(line, meta)| {
            let nanos = (meta.ts_ms as u128 * 1_000_000).to_string();
            let attrs: Vec<Value> = meta
                .attrs
                .iter()
                .map(|(k, v)| json!({ "key": k, "value": attr_value(v) }))
                .collect();
            json!({
                "timeUnixNano": nanos,
                "observedTimeUnixNano": nanos,
                "severityNumber": meta.severity.0,
                "severityText": meta.severity.1,
                "body": { "stringValue": line },
                "attributes": attrs,
            })
        })
        .collect();
    let body = json!({
        "resourceLogs": [{
            "resource": { "attributes": [
                { "key": "service.name", "value": { "stringValue": "mcptrail" } },
                { "key": "service.instance.id", "value": { "stringValue": stream } }
            ]},
            "scopeLogs": [{
                "scope": { "name": "mcptrail", "version": env!("CARGO_PKG_VERSION") },
                "logRecords": records
            }]
        }]
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

/// The record lines inside an OTLP JSON logs request (what a collector stores).
pub fn decode_lines(body: &[u8]) -> Result<Vec<String>, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let mut out = Vec::new();
    let arr = |v: &Value, k: &str| v.get(k).and_then(Value::as_array).cloned();
    for rl in arr(&v, "resourceLogs").ok_or("no resourceLogs")? {
        for sl in arr(&rl, "scopeLogs").unwrap_or_default() {
            for lr in arr(&sl, "logRecords").unwrap_or_default() {
                match lr
                    .get("body")
                    .and_then(|b| b.get("stringValue"))
                    .and_then(Value::as_str)
                {
                    Some(s) => out.push(s.to_string()),
                    None => return Err("a logRecord has no body.stringValue".into()),
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::audit::record::Mcp;

    #[test]
    fn round_trip_keeps_the_exact_line() {
        let mut r = Record::new(
            Kind::Command,
            "2026-11-24T10:00:00.123Z".into(),
            "id".into(),
        );
        r.mcp = Some(Mcp {
            method: Some("tools/call".into()),
            tool: Some("echo".into()),
            ..Default::default()
        });
        let meta = Meta::of(&r, 1_795_514_400_123);
        let line = r#"{"kind":"command","x":"a\"b"}"#;
        let body = encode("s1", std::iter::once((line, &meta)));
        assert_eq!(decode_lines(&body).unwrap(), vec![line.to_string()]);
        let v: Value = serde_json::from_slice(&body).unwrap();
        let lr = &v["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0];
        assert_eq!(lr["timeUnixNano"], "1795514400123000000");
        assert_eq!(lr["severityText"], "INFO");
        let attrs = lr["attributes"].as_array().unwrap();
        assert!(attrs
            .iter()
            .any(|a| a["key"] == "gen_ai.tool.name" && a["value"]["stringValue"] == "echo"));
    }

    #[test]
    fn decode_rejects_garbage() {
        assert!(decode_lines(b"x").is_err());
        assert!(decode_lines(b"{}").is_err());
        assert!(
            decode_lines(br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{}]}]}]}"#).is_err()
        );
    }
}
