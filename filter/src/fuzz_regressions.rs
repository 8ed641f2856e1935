//! Regression tests for what the fuzz targets (`fuzz/`, `make fuzz`) found, one per finding,
//! named after it. Findings in a single module's logic keep their test next to it (the SSE
//! parser's is `sse::tests::a_bom_split_across_chunks_is_still_a_bom`).

#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

use crate::filter::Root;
use crate::host::fake::FakeHost;
use crate::host::{Action, Body, Headers};
use crate::mcp::jsonrpc::{decode_body, peek_body};

/// Required auth with an HS256 secret, and a policy that can deny (so POST bodies are held).
const AUTH_POLICY: &str = r#"{"audit":{"cluster":"c"},"mcp":{"paths":["/mcp"]},
  "auth":{"mode":"required","providers":[{"issuer":"https://idp.example.com",
    "audiences":["https://mcp.example.com/mcp"],
    "shared_secret":"YS1zaGFyZWQtc2VjcmV0LW9mLTMyLWJ5dGVzLWxvbmch","algorithms":["HS256"]}]},
  "policy":{"rules":[{"tools":["delete_*"],"action":"deny"}]}}"#;

fn configured(config: &str) -> (FakeHost, Root) {
    let host = FakeHost::default();
    let mut root = Root::default();
    assert!(root.configure(&host, config.as_bytes()));
    (host, root)
}

/// Fuzz finding (target `glue`): a request refused for want of a token, whose body ends in
/// HTTP/2 trailers, answered `Continue` from the trailers callback (and, with a policy,
/// evaluated the empty held body as if it could go on). Nothing of a refused request may go
/// upstream, whichever callback comes last.
#[test]
fn trailers_after_an_auth_refusal_do_not_continue() {
    for config in [
        AUTH_POLICY,
        r#"{"audit":{"cluster":"c"},"auth":{"mode":"required","providers":[{"issuer":"i",
          "audiences":["a"],"shared_secret":"YS1zaGFyZWQtc2VjcmV0LW9mLTMyLWJ5dGVzLWxvbmch",
          "algorithms":["HS256"]}]}}"#,
    ] {
        let (host, root) = configured(config);
        host.set_header(Headers::Request, ":path", "/mcp");
        host.set_header(Headers::Request, ":method", "POST");
        let mut s = root.new_stream(2).unwrap();
        assert_eq!(s.on_request_headers(&host, false), Action::Pause);
        assert_eq!(host.responses.borrow()[0].0, 401);
        let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}"#;
        host.set_body(Body::Request, body);
        assert_eq!(s.on_request_body(&host, body.len(), false), Action::Pause);
        assert_eq!(s.on_request_trailers(&host), Action::Pause);
        assert_eq!(host.responses.borrow().len(), 1, "one local reply only");
        assert!(host.resumed.borrow().is_empty());
        s.on_log(&host);
    }
}

/// Fuzz finding (target `jsonrpc`), kept as documented behaviour: where serde_json cannot
/// build a body's tree at all (a lone UTF-16 surrogate escape, nesting deeper than 128, a
/// number beyond f64), `decode_body` refuses the whole body, while `peek_body`, which never
/// builds `params`/`result`, still classifies the elements it can. Replies are therefore
/// matched in such answers, as Python's and JavaScript's JSON parsers (which accept all three)
/// would read them; requests are always decoded strictly.
#[test]
fn peek_is_lenient_only_where_serde_json_cannot_build_the_tree() {
    let reply =
        r#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"\ud800"}]}}"#;
    let deep = format!(
        r#"{{"jsonrpc":"2.0","id":2,"result":{{"x":{}1{}}}}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    let big = r#"{"jsonrpc":"2.0","id":3,"result":{"n":1e400}}"#;
    for body in [reply, deep.as_str(), big] {
        assert!(decode_body(body.as_bytes()).is_err(), "{body}");
        let peeked = peek_body(body).unwrap();
        assert!(peeked[0].is_ok(), "{body}");
    }
    // A batch: the strict decoder refuses it whole, the peek classifies each element.
    let batch = r#"[{"jsonrpc":"2.0","id":1,"result":{}},"\ud800"]"#;
    assert!(decode_body(batch.as_bytes()).is_err());
    let peeked = peek_body(batch).unwrap();
    assert!(peeked[0].is_ok() && peeked[1].is_err());
}
