//! The masker: arbitrary JSON under arbitrary rules (field names, JSON Pointers with `*`,
//! detectors, custom regexes, every action). Never a panic; every reported pointer resolves
//! in the output (or passes through a string holding JSON); with rules that cannot match
//! their own output, masking is idempotent; with every detector on, no string left in the
//! output holds a detector's match.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use mcptrail::testkit::mask::{holds_json, unresolved, SAFE_PATTERNS, SAFE_REPLACEMENTS};
use mcptrail::mask::{Action, Detector, FieldRule, Masker, PathRule, Pattern, MAX_KEEP};
use serde_json::Value;

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Act {
    Redact,
    Partial(u8),
    Hash,
}

impl Act {
    fn action(self) -> Action {
        match self {
            Act::Redact => Action::Redact,
            Act::Partial(k) => Action::Partial {
                keep: usize::from(k) % (MAX_KEEP + 1),
            },
            Act::Hash => Action::Hash,
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Regex {
    Safe(u8),
    Any(String),
}

#[derive(Arbitrary, Debug)]
struct Case {
    replacement: Option<String>,
    safe_replacement: u8,
    fields: Vec<(String, Act)>,
    paths: Vec<(String, Act)>,
    /// Bit i turns `Detector::ALL[i]` on.
    detectors: u16,
    detector_action: Act,
    patterns: Vec<(Regex, Act)>,
    base: String,
    json: String,
}

fn strings<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::String(s) => out.push(s),
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(o) => o.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

fuzz_target!(|case: Case| {
    let mut safe = case.replacement.is_none();
    let replacement = match &case.replacement {
        Some(r) if !r.is_empty() => r.clone(),
        _ => SAFE_REPLACEMENTS[usize::from(case.safe_replacement) % SAFE_REPLACEMENTS.len()]
            .to_string(),
    };
    let mut m = Masker::new(&replacement, Some(b"0123456789abcdef"));
    for (name, act) in case.fields.iter().take(4) {
        if let Ok(f) = FieldRule::new(name, act.action()) {
            m.add_field(f);
        }
    }
    for (pointer, act) in case.paths.iter().take(4) {
        if let Ok(p) = PathRule::parse(pointer, act.action()) {
            m.add_path(p);
        }
    }
    for (i, d) in Detector::ALL.iter().enumerate() {
        if case.detectors & (1 << i) != 0 {
            m.add_detector(*d, case.detector_action.action());
        }
    }
    for (re, act) in case.patterns.iter().take(2) {
        let text = match re {
            Regex::Safe(i) => SAFE_PATTERNS[usize::from(*i) % SAFE_PATTERNS.len()].to_string(),
            Regex::Any(s) => {
                safe = false;
                s.chars().take(24).collect()
            }
        };
        if let Ok(p) = Pattern::new("p", &text, act.action()) {
            m.add_pattern(p);
        }
    }
    let _ = m.mask_text(&case.json);
    let Ok(mut v) = serde_json::from_str::<Value>(&case.json) else {
        return;
    };
    let original = v.clone();
    let masked = m.mask_message(&mut v);
    if let Some(p) = unresolved(&v, &masked) {
        panic!("{p} does not resolve in {v}");
    }
    if safe {
        let once = v.clone();
        let again = m.mask_message(&mut v);
        assert!(again.is_empty(), "reported {again:?} again on {once}");
        assert_eq!(v, once, "a second pass changed the output");
    }
    let mut at_base = original.clone();
    let _ = m.mask_value_at(&mut at_base, &case.base);

    // Every detector, redacting: no match survives in a plain string of the output.
    let mut all = Masker::new("[REDACTED]", None);
    for d in Detector::ALL {
        all.add_detector(d, Action::Redact);
    }
    let mut w = original;
    all.mask_message(&mut w);
    let mut texts = Vec::new();
    strings(&w, &mut texts);
    for t in texts.into_iter().filter(|t| !holds_json(t)) {
        assert_eq!(all.detector_matching(t), None, "a match survived in {t:?}");
    }
});
