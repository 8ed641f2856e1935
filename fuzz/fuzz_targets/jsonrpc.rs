//! JSON-RPC decoding: `decode_body` (the strict reader of requests) never panics on any
//! bytes, its accessors neither; whatever it accepts, a lenient reader (serde_json's `Value`,
//! a duplicate keeping its last copy) reads the same; and `peek_body` (the lazy reader used on
//! answers) classifies exactly like that lenient reader.
//!
//! One documented leniency: `peek_body` does not build `params`/`result`, so where the
//! lenient reader refuses a body only because serde_json cannot build its tree (a lone UTF-16
//! surrogate escape, nesting deeper than 128, a number beyond f64), `peek_body` may still
//! classify it (`fuzz_regressions::peek_is_lenient_only_where_serde_json_cannot_build_the_tree`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcptrail::mcp::jsonrpc::{
    decode_body, decode_request_value, decode_value, peek_body, DecodeError, Kind, Message,
};
use serde_json::Value;

/// What the audit trail takes from a message.
#[derive(Debug, PartialEq)]
enum Class {
    Bad,
    Msg {
        kind: Kind,
        id: Option<Value>,
        method: Option<String>,
        error: Option<Value>,
        is_error: Option<Value>,
        protocol_version: Option<Value>,
    },
}

fn flag(m: &Message, k: &str) -> Option<Value> {
    m.result.as_ref().and_then(|r| r.get(k)).cloned()
}

fn classify(r: &Result<Vec<Result<Message, DecodeError>>, DecodeError>) -> Vec<Class> {
    match r {
        Err(_) => vec![Class::Bad],
        Ok(items) => items
            .iter()
            .map(|m| match m {
                Err(_) => Class::Bad,
                Ok(m) => Class::Msg {
                    kind: m.kind,
                    id: m.id.clone(),
                    method: m.method.clone(),
                    error: m.error.clone(),
                    is_error: flag(m, "isError"),
                    protocol_version: flag(m, "protocolVersion"),
                },
            })
            .collect(),
    }
}

/// serde_json refused to build the tree (not a syntax error): `peek_body` may be lenient.
fn tree_limit(r: &Result<Vec<Result<Message, DecodeError>>, DecodeError>) -> bool {
    let msg = match r {
        Err(DecodeError::Json(m)) => m,
        _ => return false,
    };
    [
        "recursion limit exceeded",
        "number out of range",
        "surrogate",
        "unicode code point",
        "hex escape",
    ]
        .iter()
        .any(|limit| msg.contains(limit))
}

fuzz_target!(|input: &[u8]| {
    let strict = decode_body(input);
    let lenient = serde_json::from_slice::<Value>(input).map_err(|e| DecodeError::Json(e.to_string()));
    let full = lenient.clone().and_then(decode_value);
    if strict.is_ok() {
        // The strict reader classifies what it reads exactly as the lenient one.
        assert_eq!(strict, lenient.and_then(decode_request_value));
        // What the strict reader accepts, the answers' reader reads the same (but for the
        // case-folded look-alikes only requests are refused for).
        if let (Ok(s), Ok(f)) = (&strict, &full) {
            assert_eq!(s.len(), f.len());
            for (s, f) in s.iter().zip(f) {
                if s.is_ok() {
                    assert_eq!(s, f, "strict and lenient readings differ on {input:?}");
                }
            }
        }
    }
    if let Ok(items) = &strict {
        assert!(!items.is_empty());
        for m in items.iter().flatten() {
            let _ = (m.tool(), m.arguments(), m.prompt(), m.resource());
            let _ = m.client_info();
            match m.kind {
                Kind::Request => assert!(m.method.is_some() && m.id.is_some()),
                Kind::Notification => assert!(m.method.is_some() && m.id.is_none()),
                Kind::Response => assert!(m.result.is_some() != m.error.is_some()),
            }
        }
    }
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    let peek = peek_body(text);
    match &full {
        // Whatever the full decoder reads, the peek reads the same.
        Ok(_) => assert_eq!(
            classify(&full),
            classify(&peek),
            "decode_body and peek_body disagree on {text:?}"
        ),
        Err(_) if tree_limit(&full) => {}
        // What the full decoder refuses, the peek finds nothing usable in either.
        Err(_) => {
            let c = classify(&peek);
            assert!(
                c.iter().all(|c| *c == Class::Bad),
                "peek_body reads {c:?} in what decode_body refuses: {text:?}"
            );
        }
    }
});
