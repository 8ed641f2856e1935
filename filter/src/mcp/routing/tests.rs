#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::*;

#[test]
fn header_values_decode_as_the_sdks_encode_them() {
    assert_eq!(decode_header_value("us-west1").as_deref(), Some("us-west1"));
    // "Hello, 世界" and " padded ", the SEP's examples.
    assert_eq!(
        decode_header_value("=?base64?SGVsbG8sIOS4lueVjA==?=").as_deref(),
        Some("Hello, 世界")
    );
    assert_eq!(
        decode_header_value("=?base64?IHBhZGRlZCA=?=").as_deref(),
        Some(" padded ")
    );
    // Malformed or non-canonical base64, or not UTF-8: matches nothing.
    for bad in [
        "=?base64?!!?=",
        "=?base64?IHBhZGRlZCB=?=",
        "=?base64?/w==?=",
    ] {
        assert_eq!(decode_header_value(bad), None, "{bad}");
    }
}

#[test]
fn routing_headers_are_read_case_insensitively_with_duplicates_noted() {
    let r = Routing::from_headers([
        ("Mcp-Method", "tools/call"),
        ("mcp-name", "a"),
        ("MCP-Param-Region", "eu"),
        ("x-other", "1"),
    ]);
    assert_eq!(r.method.as_deref(), Some("tools/call"));
    assert_eq!(r.name.as_deref(), Some("a"));
    assert_eq!(r.params, vec![("region".to_string(), "eu".to_string())]);
    assert_eq!(r.duplicated, None);
    assert!(r.present());
    assert!(!Routing::from_headers([("x", "y")]).present());
}

#[test]
fn duplicated_standard_headers_disagree() {
    let r = Routing::from_headers([("mcp-method", "tools/call"), ("Mcp-Method", "tools/list")]);
    assert_eq!(r.duplicated.as_deref(), Some("mcp-method"));
    let r = Routing::from_headers([("mcp-param-a", "1"), ("mcp-param-a", "2")]);
    assert_eq!(r.duplicated.as_deref(), Some("mcp-param-a"));
}
