//! Property tests with a deterministic generator (the crate's `IdGen`): no input makes the
//! masker panic, masking is idempotent, reported pointers resolve, and secrets planted in
//! random structure under random escaping never survive.

#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

use serde_json::{json, Map, Value};

use super::*;
use crate::ids::IdGen;
use crate::testkit::mask::{unresolved, SAFE_PATTERNS, SAFE_REPLACEMENTS};

/// Cases per property (fewer under the wasm test runner, which is slower).
const CASES: usize = if cfg!(target_arch = "wasm32") {
    150
} else {
    1500
};

/// The property generator: the crate's one PRNG ([`IdGen`]) with a few helpers.
struct Rng(IdGen);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(IdGen::new(seed))
    }

    fn next(&mut self) -> u64 {
        self.0.next_u64()
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
}

const JWT: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
const PEM: &str = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBkg4LVWM9nuwNSk3yByxZpYRTBnVJk5oZTUrk4GzlSgoAoGCCqGSM49\n-----END EC PRIVATE KEY-----";

/// (text planted, the secret that must not survive).
fn secrets() -> Vec<(String, String)> {
    let plain = [
        "alice@example.com",
        "bob.smith+x@corp.example.org",
        "4111111111111111",
        "5555 5555 5555 4444",
        "3782-822463-10005",
        "123-45-6789",
        "DE89 3704 0044 0532 0130 00",
        "GB29NWBK60161331926819",
        "+14155552671",
        "+44 20 7946 0958",
        "10.20.30.40",
        JWT,
        "AKIAIOSFODNN7EXAMPLE",
        "ASIAY34FZKBOKMUTVV7A",
        "AIzaSyA1b2C3d4E5f6G7h8I9j0K_L-mNoPqRsTu",
        "ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8",
        "xoxb-1234567890-abcdefghij",
        PEM,
    ];
    let mut v: Vec<(String, String)> = plain
        .iter()
        .map(|s| (s.to_string(), s.to_string()))
        .collect();
    v.push(("Bearer abc123def456ghi".into(), "abc123def456ghi".into()));
    v
}

/// Text with some of the bytes detectors anchor on, and a little Unicode.
fn filler(rng: &mut Rng) -> String {
    const PIECES: [&str; 24] = [
        "a", "Z", "0", "7", " ", "@", ".", "+", "-", "_", "/", "~", ":", "eyJ", "AKIA", "gh",
        "xox", "é", "€", "😀", "\"", "{", "}", "\n",
    ];
    let n = rng.below(12);
    (0..n).map(|_| *rng.pick(&PIECES)).collect()
}

const KEYS: [&str; 20] = [
    "password",
    "Pass-Word",
    "api_key",
    "apiKey",
    "token",
    "a/b",
    "m~n",
    "text",
    "content",
    "arguments",
    "params",
    "result",
    "tools",
    "x",
    "",
    "data",
    "nested",
    "ssn",
    "é",
    "[REDACTED]",
];

fn random_string(rng: &mut Rng, plant: &mut Vec<String>, secrets: &[(String, String)]) -> String {
    let mut s = filler(rng);
    if rng.chance(30) {
        let (text, secret) = rng.pick(secrets);
        s = format!("{s} | {text} | {}", filler(rng));
        plant.push(secret.clone());
    }
    s
}

fn random_value(
    rng: &mut Rng,
    depth: usize,
    plant: &mut Vec<String>,
    secrets: &[(String, String)],
) -> Value {
    let k = if depth >= 5 {
        rng.below(4)
    } else {
        rng.below(8)
    };
    match k {
        0 => Value::Null,
        1 => Value::Bool(rng.chance(50)),
        2 => match rng.below(4) {
            0 => json!(rng.next() >> 40),
            1 => json!(4111111111111111u64),
            2 => json!(-1.5e10),
            _ => json!(rng.next()),
        },
        3 => Value::String(random_string(rng, plant, secrets)),
        4 | 5 => {
            let n = rng.below(5);
            let mut map = Map::new();
            for _ in 0..n {
                let key = if rng.chance(10) {
                    let (text, secret) = rng.pick(secrets);
                    if !text.contains('\n') {
                        plant.push(secret.clone());
                    }
                    format!("k {text} k")
                } else {
                    rng.pick(&KEYS).to_string()
                };
                if !map.contains_key(&key) {
                    let value = random_value(rng, depth + 1, plant, secrets);
                    map.insert(key, value);
                }
            }
            Value::Object(map)
        }
        6 => {
            let n = rng.below(5);
            Value::Array(
                (0..n)
                    .map(|_| random_value(rng, depth + 1, plant, secrets))
                    .collect(),
            )
        }
        _ => {
            // JSON held in a string, itself randomly escaped.
            let inner = random_value(rng, depth + 2, plant, secrets);
            Value::String(to_json(rng, &inner))
        }
    }
}

/// Serialises `v`, escaping string characters as `\uXXXX` at random.
fn to_json(rng: &mut Rng, v: &Value) -> String {
    let mut out = String::new();
    write_json(rng, v, &mut out);
    out
}

fn write_str(rng: &mut Rng, s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if rng.chance(25) => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04X}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn write_json(rng: &mut Rng, v: &Value, out: &mut String) {
    match v {
        Value::String(s) => write_str(rng, s, out),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(rng, x, out);
            }
            out.push(']');
        }
        Value::Object(m) => {
            out.push('{');
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push_str(if rng.chance(50) { ", " } else { "," });
                }
                write_str(rng, k, out);
                out.push(':');
                write_json(rng, x, out);
            }
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// Every key and string in `v`, following JSON held in strings.
fn all_text(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => {
            out.push(s.clone());
            if let Ok(inner) = serde_json::from_str::<Value>(s) {
                all_text(&inner, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| all_text(x, out)),
        Value::Object(m) => {
            for (k, x) in m {
                out.push(k.clone());
                all_text(x, out);
            }
        }
        _ => {}
    }
}

fn all_detectors(action: Action, replacement: &str) -> Masker {
    let mut m = Masker::new(replacement, Some(b"0123456789abcdef"));
    for d in Detector::ALL {
        m.add_detector(d, action);
    }
    m
}

fn random_action(rng: &mut Rng) -> Action {
    match rng.below(3) {
        0 => Action::Redact,
        1 => Action::Partial {
            keep: rng.below(MAX_KEEP + 1),
        },
        _ => Action::Hash,
    }
}

/// Random rules; `safe` keeps to patterns that cannot match masking output.
fn random_masker(rng: &mut Rng, safe: bool) -> Masker {
    const ANY_PATTERNS: [&str; 8] = [
        "a*", ".", "\\d+", "(?s).*", "[^a]+", "\\*+", "$", "(a|aa)*b",
    ];
    let replacement = if safe || rng.chance(50) {
        rng.pick(&SAFE_REPLACEMENTS).to_string()
    } else {
        filler(rng) + "x"
    };
    let mut m = Masker::new(&replacement, Some(b"0123456789abcdef"));
    for _ in 0..rng.below(4) {
        let name = if rng.chance(70) {
            rng.pick(&KEYS).to_string()
        } else {
            filler(rng)
        };
        if let Ok(f) = FieldRule::new(&name, random_action(rng)) {
            m.add_field(f);
        }
    }
    for _ in 0..rng.below(3) {
        let n = rng.below(4);
        let mut p = String::new();
        for _ in 0..n {
            p.push('/');
            p.push_str(match rng.below(4) {
                0 => "*",
                1 => KEYS[rng.below(KEYS.len())],
                2 => "0",
                _ => "a~1b",
            });
        }
        if let Ok(rule) = PathRule::parse(&p, random_action(rng)) {
            m.add_path(rule);
        }
    }
    for d in Detector::ALL {
        if rng.chance(60) {
            m.add_detector(d, random_action(rng));
        }
    }
    for _ in 0..rng.below(3) {
        let re = if safe {
            *rng.pick(&SAFE_PATTERNS)
        } else {
            *rng.pick(&ANY_PATTERNS)
        };
        if let Ok(p) = Pattern::new("p", re, random_action(rng)) {
            m.add_pattern(p);
        }
    }
    m
}

fn check_pointers(out: &Value, masked: &[String], case: usize) {
    if let Some(p) = unresolved(out, masked) {
        panic!("case {case}: {p} does not resolve in {out}");
    }
}

#[test]
fn no_input_panics() {
    let mut rng = Rng::new(1);
    let secrets = secrets();
    for case in 0..CASES {
        let m = random_masker(&mut rng, false);
        let mut plant = Vec::new();
        let mut v = random_value(&mut rng, 0, &mut plant, &secrets);
        let masked = m.mask_message(&mut v);
        check_pointers(&v, &masked, case);
        let base = *rng.pick(&["", "/params/arguments", "no-slash", "/", "/a~1b/0"]);
        m.mask_value_at(&mut v, base);
        let text = random_string(&mut rng, &mut plant, &secrets);
        let _ = m.mask_text(&text);
        let features = detectors::Features::of(&text);
        for d in Detector::ALL {
            let mut hits = 0;
            d.find(&text, &mut |_, _| hits += 1);
            assert!(
                hits == 0 || d.applies(&features),
                "case {case}: {}",
                d.name()
            );
        }
        // Raw bytes as text, including broken UTF-8 boundaries around multi-byte chars.
        let raw: String = (0..rng.below(64))
            .map(|_| char::from_u32(rng.below(0x1_0000) as u32).unwrap_or('?'))
            .collect();
        let _ = m.mask_text(&raw);
        for d in Detector::ALL {
            d.find(&raw, &mut |a, b| {
                assert!(a <= b && b <= raw.len());
                assert!(raw.is_char_boundary(a) && raw.is_char_boundary(b));
            });
        }
    }
}

#[test]
fn masking_is_idempotent() {
    let mut rng = Rng::new(2);
    let secrets = secrets();
    for case in 0..CASES {
        let m = random_masker(&mut rng, true);
        let mut plant = Vec::new();
        let mut v = random_value(&mut rng, 0, &mut plant, &secrets);
        let first = m.mask_message(&mut v);
        check_pointers(&v, &first, case);
        let once = v.clone();
        let again = m.mask_message(&mut v);
        assert!(
            again.is_empty(),
            "case {case}: reported {again:?} on {once}"
        );
        assert_eq!(v, once, "case {case}");
    }
}

#[test]
fn planted_secrets_never_survive() {
    let mut rng = Rng::new(3);
    let secrets = secrets();
    for case in 0..CASES {
        let action = match rng.below(3) {
            0 => Action::Redact,
            1 => Action::Partial { keep: 4 },
            _ => Action::Hash,
        };
        let m = all_detectors(action, "[REDACTED]");
        let mut plant = Vec::new();
        let inner = random_value(&mut rng, 1, &mut plant, &secrets);
        let msg = json!({"jsonrpc": "2.0", "id": case, "result": {"content": [
            {"type": "text", "text": to_json(&mut rng, &inner)}],
            "structuredContent": inner}});
        // The body as it arrives: randomly escaped, then decoded.
        let body = to_json(&mut rng, &msg);
        let mut v: Value = serde_json::from_str(&body).unwrap();
        let masked = m.mask_message(&mut v);
        let mut texts = Vec::new();
        all_text(&v, &mut texts);
        for secret in &plant {
            for t in &texts {
                assert!(
                    !t.contains(secret.as_str()),
                    "case {case}: `{secret}` survived in {t:?}"
                );
            }
        }
        assert!(
            plant.is_empty() || !masked.is_empty(),
            "case {case}: {plant:?} in {body}"
        );
        assert_eq!(v["id"], case);
    }
}

#[test]
fn deep_values_are_bounded() {
    let m = all_detectors(Action::Redact, "[REDACTED]");
    // Deeper than serde_json parses: built by hand.
    let mut v = json!("alice@example.com");
    for _ in 0..600 {
        v = json!([v]);
    }
    let masked = m.mask_message(&mut v);
    assert_eq!(masked.len(), 1);
    assert!(!v.to_string().contains("alice"));
    assert!(m.mask_message(&mut v).is_empty());
    // Nested JSON strings deeper than the embedding limit are still scanned as text.
    let mut s = json!({"m": "carol@example.com"}).to_string();
    for _ in 0..6 {
        s = json!({ "t": s }).to_string();
    }
    let mut v = Value::String(s);
    m.mask_message(&mut v);
    let mut texts = Vec::new();
    all_text(&v, &mut texts);
    assert!(texts.iter().all(|t| !t.contains("carol@example.com")));
}

/// Spans are ordered by a stable sort unless `partial` keeps differ (`Masker::find_spans`):
/// the output is the one the unstable sort gave, over rules whose spans overlap and tie
/// (patterns over card digits, detectors over the same text, every action) and strings long
/// enough for the sorts to differ in method (more than 20 spans).
#[test]
fn stable_span_order_masks_as_the_unstable_one() {
    const OVERLAPPING: [&str; 6] = ["[0-9]{4,}", "\\d+", "[0-9]", "1111", "[a-z]+@", "\\.[0-9]"];
    let mut rng = Rng::new(11);
    let secrets = secrets();
    for case in 0..CASES / 3 {
        let keep = rng.below(MAX_KEEP + 1);
        let action = |rng: &mut Rng| match rng.below(3) {
            0 => Action::Redact,
            1 => Action::Partial { keep },
            _ => Action::Hash,
        };
        let replacement = SAFE_REPLACEMENTS[rng.below(SAFE_REPLACEMENTS.len())];
        let mut m = Masker::new(replacement, Some(b"0123456789abcdef"));
        for d in Detector::ALL {
            if rng.chance(70) {
                m.add_detector(d, action(&mut rng));
            }
        }
        for _ in 0..rng.below(4) {
            let re = OVERLAPPING[rng.below(OVERLAPPING.len())];
            if let Ok(p) = Pattern::new("p", re, action(&mut rng)) {
                m.add_pattern(p);
            }
        }
        // The same pattern twice: spans that tie exactly, with different actions.
        for _ in 0..2 {
            if let Ok(p) = Pattern::new("q", "[0-9]{4,}", action(&mut rng)) {
                m.add_pattern(p);
            }
        }
        assert!(!m.mixed_keeps);
        let mut unstable = m.clone();
        unstable.mixed_keeps = true;
        let mut text = String::new();
        for _ in 0..rng.below(60) {
            text.push_str(&filler(&mut rng));
            text.push(' ');
            text.push_str(&rng.pick(&secrets).0);
        }
        assert_eq!(m.mask_text(&text), unstable.mask_text(&text), "case {case}");
        let mut plant = Vec::new();
        let v = random_value(&mut rng, 0, &mut plant, &secrets);
        let (mut a, mut b) = (v.clone(), v);
        assert_eq!(m.mask_message(&mut a), unstable.mask_message(&mut b));
        assert_eq!(a, b, "case {case}");
    }
}
