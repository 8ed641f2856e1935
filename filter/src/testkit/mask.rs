//! Masker test support shared by the property tests (`mask::props`) and the `mask` fuzz
//! target: rule parts that cannot match masking output, and the check that reported
//! pointers resolve. Exposed by the `testkit` feature; never part of the filter module.

use serde_json::Value;

/// Replacements no safe pattern or detector can match.
pub const SAFE_REPLACEMENTS: [&str; 4] = ["[REDACTED]", "***", "<masked>", "#"];

/// Custom patterns that cannot match masking output (replacements above, `hash:` tokens,
/// `*` runs): with these, masking must be idempotent.
pub const SAFE_PATTERNS: [&str; 7] = [
    "EMP-[0-9]{6}",
    "(?i)secret[0-9]+",
    "[a-z]+@[a-z]+\\.[a-z]{2,}",
    "Z{2,}",
    "[A-Z]{4,}",
    "[0-9]{4,}",
    "7[0-9]",
];

/// The first reported pointer that neither resolves in `out` nor passes through a string
/// (JSON held in a string is reported through it).
pub fn unresolved<'a>(out: &Value, masked: &'a [String]) -> Option<&'a str> {
    masked.iter().map(String::as_str).find(|p| {
        out.pointer(p).is_none()
            && !p
                .match_indices('/')
                .map(|(i, _)| p.get(..i).unwrap_or(""))
                .any(|prefix| out.pointer(prefix).is_some_and(Value::is_string))
    })
}

/// Whether the masker reads `s` as JSON held in a string (and masks inside it).
pub fn holds_json(s: &str) -> bool {
    crate::mask::looks_like_json(s)
}
