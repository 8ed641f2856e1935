//! Policy cannot be bypassed by the shape of a body: under a rule that denies `delete_*`,
//! whatever bytes arrive (in any two chunks), a body the glue forwards is never one that a
//! lenient server reads as a call to a denied tool. Two lenient readings stand in for the
//! servers: serde_json's `Value` (a member given twice keeps its last copy, as Python's and
//! JavaScript's parsers do) and one that keeps the first copy; each must, when it reads the
//! body at all, read the same calls as the filter's own (strict) reading.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcptrail::host::fake::FakeHost;
use mcptrail::filter::Root;
use mcptrail::mcp::jsonrpc::{decode_body, decode_value, DecodeError, Message};
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

const CONFIG: &str = r#"{"audit":{"cluster":"audit"},"mcp":{"paths":["/mcp"]},"policy":{"rules":[{"tools":["delete_*"],"action":"deny"}]}}"#;

/// A JSON value read keeping the first copy of a member given twice.
struct First(Value);

impl<'de> Deserialize<'de> for First {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Value;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("JSON")
            }
            fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
                Ok(Value::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
                Ok(v.into())
            }
            fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
                Ok(v.into())
            }
            fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
                Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
            }
            fn visit_str<E>(self, v: &str) -> Result<Value, E> {
                Ok(Value::String(v.into()))
            }
            fn visit_unit<E>(self) -> Result<Value, E> {
                Ok(Value::Null)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Value, A::Error> {
                let mut v = Vec::new();
                while let Some(First(x)) = s.next_element()? {
                    v.push(x);
                }
                Ok(Value::Array(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Value, A::Error> {
                let mut o = Map::new();
                while let Some(k) = m.next_key::<String>()? {
                    let First(v) = m.next_value()?;
                    o.entry(k).or_insert(v);
                }
                Ok(Value::Object(o))
            }
        }
        d.deserialize_any(V).map(First)
    }
}

type Reading = Result<Vec<Result<Message, DecodeError>>, DecodeError>;

/// (method, tool) of each message a reading accepts.
fn calls(r: &Reading) -> Option<Vec<Option<(Option<String>, Option<String>)>>> {
    r.as_ref().ok().map(|items| {
        items
            .iter()
            .map(|m| {
                m.as_ref()
                    .ok()
                    .map(|m| (m.method.clone(), m.tool().map(str::to_string)))
            })
            .collect()
    })
}

fn denied_call(r: &Reading) -> bool {
    calls(r).into_iter().flatten().flatten().any(|(method, tool)| {
        method.as_deref() == Some("tools/call")
            && tool.is_some_and(|t| t.starts_with("delete_"))
    })
}

fuzz_target!(|input: &[u8]| {
    let Some((&cut, body)) = input.split_first() else {
        return;
    };
    let host = FakeHost::default();
    let mut root = Root::default();
    assert!(root.configure(&host, CONFIG.as_bytes()));
    if !host.forwards(&root, body, usize::from(cut) * body.len() / 255) {
        return;
    }
    let strict = decode_body(body);
    let last: Reading = serde_json::from_slice::<Value>(body)
        .map_err(|e| DecodeError::Json(e.to_string()))
        .and_then(decode_value);
    let first: Reading = serde_json::from_slice::<First>(body)
        .map_err(|e| DecodeError::Json(e.to_string()))
        .and_then(|f| decode_value(f.0));
    for (name, lenient) in [("last-copy", &last), ("first-copy", &first)] {
        assert!(
            !denied_call(lenient),
            "forwarded a body a {name} reader takes for a denied call: {body:?}"
        );
        if lenient.is_ok() {
            assert_eq!(
                calls(lenient),
                calls(&strict),
                "the {name} reader reads a forwarded body otherwise: {body:?}"
            );
        }
    }
});
