#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::*;

#[test]
fn the_error_answer_is_json_rpc_with_the_id() {
    let u = Unjudgeable::new(400, PARSE_ERROR, Value::from(7), "why");
    let v: Value = serde_json::from_str(&u.reply()).unwrap();
    assert_eq!(v["jsonrpc"], "2.0");
    assert_eq!(v["id"], 7);
    assert_eq!(v["error"]["code"], PARSE_ERROR);
    assert!(v["error"]["message"].as_str().unwrap().contains("why"));
}
