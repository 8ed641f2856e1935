//! Masking: sensitive values never reach the audit trail, and optionally never reach the
//! client or the MCP server.
//!
//! A [`Masker`] is compiled once from the `masking` configuration section
//! ([`crate::config::Config::masking`]) and then used read-only, so one instance serves
//! every stream of a VM. It has no proxy-wasm dependency.
//!
//! # API for the glue
//!
//! - [`Masker::is_empty`]: no rule at all; the glue can skip masking entirely.
//! - [`Masker::mask_message`]`(&self, msg: &mut Value) -> Vec<String>`: masks one decoded
//!   JSON-RPC message in place (a request, a notification, a response, or one element of a
//!   batch) and returns the JSON Pointers, relative to the message, of what it changed:
//!   exactly what goes into a record's `masked`. Never the values.
//! - [`Masker::mask_value_at`]`(&self, v: &mut Value, base: &str) -> Vec<String>`: the same
//!   for a part of a message taken out on its own (`base` is its pointer in the message, for
//!   example `/params/arguments` or `/error`), so path rules and the reported pointers stay
//!   relative to the message.
//! - [`Masker::mask_text`]`(&self, s: &str) -> Cow<str>`: free text (a `decode.error`
//!   reason, a log line): detectors and patterns, and the rules inside when the text is JSON.
//! - The public fields `responses`, `requests`, `max_bytes` and `on_too_large` carry the
//!   section's switches; [`Masker::admits`] says whether a body is small enough to mask.
//!
//! Where the glue calls it (each decoded JSON-RPC message, batch elements one by one):
//!
//! - **Records, always.** Mask before anything reaches a record: `mcp.arguments`,
//!   `mcp.resource`, `mcp.prompt`, `mcp.client`, `outcome.error` and any result preview are
//!   taken from a masked message (the message itself when it is masked for the wire anyway,
//!   else a copy, or just the part with [`Masker::mask_value_at`] at its pointer). The
//!   record's `masked` is the union of the request's and the response's pointers (`/params/..`
//!   and `/result/..` or `/error/..` cannot collide). A `decode.error` reason that quotes a
//!   body goes through [`Masker::mask_text`].
//! - **Responses, with `responses`.** An `application/json` body: decode, `mask_message`
//!   each message, re-serialise. An SSE stream: each complete event's `data` the same way, as
//!   it passes. A body (or event) over `max_bytes`: `on_too_large` decides, and the record is
//!   a `decode.error`, never one holding unmasked content.
//! - **Requests, with `requests`.** The held request body is masked in place before it goes
//!   upstream; without `requests` the server gets it unmasked and only the record's copy is
//!   masked.
//!
//! # Semantics (the `masking` section of `docs/configuration.md`)
//!
//! - **Rules.** `fields` match object keys at any depth, ignoring ASCII case and the
//!   separators `-` and `_` (`api_key` matches `apiKey`, `API-KEY`, `Api_Key`). `paths` are
//!   JSON Pointers relative to the message in which a `*` segment matches any key or index.
//!   A node matched by a path or field rule has all its scalars masked (strings, numbers and
//!   booleans; `null` stays) and its structure kept; its pointer is reported once.
//!   Detectors and patterns replace only the matched span inside a string; the string's
//!   pointer is reported once. Object keys are scanned by detectors and patterns as well
//!   (an e-mail used as a key is renamed to its masked form, with `#2`, `#3`... on a clash).
//!   Integers of 13-19 digits are checked by the `credit_card` detector.
//! - **Never masked**: `inputSchema`/`outputSchema` of the tools in a `tools/list` result
//!   (`/result/tools/*/inputSchema`), which are metadata, and the protocol members that
//!   correlate messages (`/jsonrpc`, `/id`, `/method`, `/params/cursor`,
//!   `/result/nextCursor`, `/params/_meta/progressToken`, `/params/progressToken`,
//!   `/params/requestId`), so masked traffic stays valid MCP.
//! - **Decoded values**: masking works on `serde_json` values, so `\u0040`-escaped text is
//!   seen as `@`. A string that holds JSON (an object, an array or a string literal: tool
//!   results carry JSON inside `/result/content/*/text`) is parsed, masked with every rule
//!   and re-serialised compactly when something changed. Three levels of such nesting are
//!   parsed; a string deeper down that looks like JSON and holds escapes (which could hide
//!   a secret from the detectors) is replaced whole, one without escapes is scanned as
//!   text. Its pointers continue through the string: a `password` key inside the text of the
//!   first content item is reported as `/result/content/0/text/password`, and `paths` can
//!   address it the same way.
//! - **Actions**: `redact` (the replacement, default `[REDACTED]`), `partial` (the value's
//!   characters as `*`, except the last `keep`, which stay only when at least as many are
//!   hidden: `************1111`), `hash` (`hash:` + the first 16 hex digits of
//!   HMAC-SHA256 keyed by `masking.hash_key`, or by a key derived from `audit.hmac_key`, see
//!   [`derive_hash_key`]). When spans of different actions overlap they merge and the
//!   strongest action wins (`redact` > `hash` > `partial`).
//! - **Idempotent**: masked output is a fixed point. Spans that lie inside masking output
//!   (the replacement or a `hash:` token) are left alone, a scalar already in its masked
//!   form is unchanged, and nothing unchanged is reported. Where `partial` keeps a tail
//!   visible, a string is masked again until nothing changes (at most four steps), since a
//!   tail can hold a new match. (A custom pattern that matches `*` or can match across the
//!   replacement and the text next to it could still mask masked output again.)
//! - **Bounded**: recursion stops at 512 levels (deeper values are replaced whole); nothing
//!   here panics.

mod detectors;
#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;

pub use detectors::Detector;
use detectors::Features;

use std::borrow::Cow;
use std::fmt::{self, Write as _};

use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Default text that replaces a redacted value.
pub const DEFAULT_REPLACEMENT: &str = "[REDACTED]";
/// Default bound of a body the filter decodes to mask.
pub const DEFAULT_MAX_BYTES: usize = 1 << 20;
/// Default `keep` of the `partial` action.
pub const DEFAULT_KEEP: usize = 4;
/// Largest `keep` accepted.
pub const MAX_KEEP: usize = 32;
/// Prefix of a `hash` action's output.
pub const HASH_PREFIX: &str = "hash:";
const HASH_HEX_LEN: usize = 16;
const HASH_TOKEN_LEN: usize = HASH_PREFIX.len() + HASH_HEX_LEN;
/// Longest field name after normalisation.
pub const MAX_FIELD_LEN: usize = 64;
const MAX_EMBED: u32 = 3;
const MAX_DEPTH: usize = 512;

/// Message members that correlate JSON-RPC traffic: never masked.
const PROTOCOL_POINTERS: [&str; 8] = [
    "/jsonrpc",
    "/id",
    "/method",
    "/params/cursor",
    "/result/nextCursor",
    "/params/_meta/progressToken",
    "/params/progressToken",
    "/params/requestId",
];

/// What replaces a masked value or span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The replacement text.
    Redact,
    /// `*` for each character but the last `keep` (all `*` when the value is shorter than
    /// `2 * keep`).
    Partial { keep: usize },
    /// `hash:` + 16 hex digits of a keyed HMAC-SHA256: correlates, does not reveal.
    Hash,
}

impl Action {
    fn strength(self) -> u8 {
        match self {
            Action::Redact => 2,
            Action::Hash => 1,
            Action::Partial { .. } => 0,
        }
    }

    fn stronger(self, other: Action) -> Action {
        if other.strength() > self.strength() {
            other
        } else {
            self
        }
    }
}

/// What the glue does with a body larger than `max_bytes`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnTooLarge {
    /// Pass it through unmasked and give a `decode.error` record (never an unmasked record).
    #[default]
    Pass,
    /// Refuse it: the glue answers with an error instead (for example 413 for a request,
    /// 502 for a response).
    Block,
}

/// A `fields` rule: a normalised key name and its action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRule {
    norm: Vec<u8>,
    action: Action,
}

impl FieldRule {
    /// A rule for `name`, matched after normalisation (ASCII lowercase, `-`/`_` removed).
    pub fn new(name: &str, action: Action) -> Result<FieldRule, String> {
        let norm: Vec<u8> = name
            .bytes()
            .filter(|&c| c != b'-' && c != b'_')
            .map(|c| c.to_ascii_lowercase())
            .collect();
        if norm.is_empty() {
            return Err("a field name needs a character other than `-` and `_`".into());
        }
        if norm.len() > MAX_FIELD_LEN {
            return Err(format!("longer than {MAX_FIELD_LEN} bytes"));
        }
        Ok(FieldRule { norm, action })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Any,
    /// A segment in its escaped (`~0`, `~1`) form, compared with the escaped pointer.
    Key(String),
}

/// A `paths` rule: a JSON Pointer with `*` segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathRule {
    segs: Vec<Seg>,
    action: Action,
}

impl PathRule {
    /// Parses a pointer such as `/params/arguments/*/ssn`.
    pub fn parse(pointer: &str, action: Action) -> Result<PathRule, String> {
        let Some(rest) = pointer.strip_prefix('/') else {
            return Err(format!(
                "`{pointer}` is not a JSON Pointer (it must start with `/`)"
            ));
        };
        let mut segs = Vec::new();
        for seg in rest.split('/') {
            let mut chars = seg.chars();
            while let Some(c) = chars.next() {
                if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
                    return Err(format!("`{pointer}`: `~` must be followed by `0` or `1`"));
                }
            }
            segs.push(if seg == "*" {
                Seg::Any
            } else {
                Seg::Key(seg.to_string())
            });
        }
        if segs.len() > 63 {
            return Err(format!("`{pointer}` is deeper than 63 segments"));
        }
        Ok(PathRule { segs, action })
    }
}

/// A `patterns` rule: a named regex compiled once.
#[derive(Debug, Clone)]
pub struct Pattern {
    name: String,
    regex: regex_lite::Regex,
    /// A literal every match starts with: strings without it are not searched.
    literal: Option<String>,
    action: Action,
}

impl Pattern {
    /// Compiles `regex` (regex-lite syntax).
    pub fn new(name: &str, regex: &str, action: Action) -> Result<Pattern, String> {
        let compiled = regex_lite::Regex::new(regex).map_err(|e| e.to_string())?;
        Ok(Pattern {
            name: name.to_string(),
            regex: compiled,
            literal: required_literal(regex),
            action,
        })
    }

    /// The pattern's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// The literal text a regex's matches all start with, when it is plain to see: the run
/// of ordinary characters at its start, without alternation anywhere.
fn required_literal(re: &str) -> Option<String> {
    if re.contains('|') {
        return None;
    }
    let body = re.strip_prefix('^').unwrap_or(re);
    let mut lit = String::new();
    let mut chars = body.chars().peekable();
    while let Some(&c) = chars.peek() {
        if "\\.+*?()|[]{}^$#".contains(c) || c.is_whitespace() {
            break;
        }
        lit.push(c);
        chars.next();
    }
    if matches!(chars.peek(), Some('?' | '*' | '{')) {
        lit.pop();
    }
    (!lit.is_empty()).then_some(lit)
}

/// The `hash` key derived from `audit.hmac_key` when `masking.hash_key` is absent:
/// HMAC-SHA256(audit key, `"mcptrail masking hash key v1"`), so the record MAC key itself
/// is never used for anything else.
pub fn derive_hash_key(audit_key: &[u8]) -> Vec<u8> {
    match HmacSha256::new_from_slice(audit_key) {
        Ok(mut mac) => {
            mac.update(b"mcptrail masking hash key v1");
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => audit_key.to_vec(),
    }
}

/// A matched span of a string.
#[derive(Debug, Clone, Copy)]
struct Span {
    start: usize,
    end: usize,
    action: Action,
}

/// Buffers one masking pass reuses for every string: the spans found, the digit runs.
#[derive(Default)]
struct Scratch {
    spans: Vec<Span>,
    runs: Vec<(usize, usize)>,
}

/// The compiled `masking` section.
#[derive(Clone)]
pub struct Masker {
    fields: Vec<FieldRule>,
    /// Bit `n` set when some field rule's normalised name has `n` bytes.
    field_lens: u128,
    paths: Vec<PathRule>,
    /// Bit `n` set when some path rule has `n` segments.
    path_lens: u64,
    detectors: Vec<(Detector, Action)>,
    patterns: Vec<Pattern>,
    replacement: String,
    hasher: Option<HmacSha256>,
    /// Strings shorter than this are not scanned by detectors.
    min_detect_len: usize,
    /// The action of `credit_card`, used on long integers too.
    card_action: Option<Action>,
    /// Some detector or pattern keeps a `partial` tail visible.
    keeps_tails: bool,
    /// The `partial` keep of the first detector or pattern with that action.
    partial_keep: Option<usize>,
    /// Detectors and patterns use `partial` with different keeps (see `find_spans`).
    mixed_keeps: bool,
    /// Also mask what the client receives.
    pub responses: bool,
    /// Also mask requests before they reach the MCP server.
    pub requests: bool,
    /// Largest body (bytes) decoded to be masked.
    pub max_bytes: usize,
    /// What happens to a larger body.
    pub on_too_large: OnTooLarge,
}

impl fmt::Debug for Masker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Masker")
            .field("fields", &self.fields.len())
            .field("paths", &self.paths.len())
            .field(
                "detectors",
                &self
                    .detectors
                    .iter()
                    .map(|(d, _)| d.name())
                    .collect::<Vec<_>>(),
            )
            .field(
                "patterns",
                &self.patterns.iter().map(Pattern::name).collect::<Vec<_>>(),
            )
            .field("hash_key", &self.hasher.is_some())
            .field("responses", &self.responses)
            .field("requests", &self.requests)
            .field("max_bytes", &self.max_bytes)
            .field("on_too_large", &self.on_too_large)
            .finish()
    }
}

impl Default for Masker {
    fn default() -> Self {
        Masker::new(DEFAULT_REPLACEMENT, None)
    }
}

impl Masker {
    /// A masker without rules; add them with the `add_*` methods.
    pub fn new(replacement: &str, hash_key: Option<&[u8]>) -> Masker {
        Masker {
            fields: Vec::new(),
            field_lens: 0,
            paths: Vec::new(),
            path_lens: 0,
            detectors: Vec::new(),
            patterns: Vec::new(),
            replacement: replacement.to_string(),
            hasher: hash_key.and_then(|k| HmacSha256::new_from_slice(k).ok()),
            min_detect_len: usize::MAX,
            card_action: None,
            keeps_tails: false,
            partial_keep: None,
            mixed_keeps: false,
            responses: false,
            requests: false,
            max_bytes: DEFAULT_MAX_BYTES,
            on_too_large: OnTooLarge::Pass,
        }
    }

    /// Adds a field rule (a second rule for the same normalised name is ignored).
    pub fn add_field(&mut self, rule: FieldRule) {
        if let Err(i) = self.fields.binary_search_by(|f| f.norm.cmp(&rule.norm)) {
            self.field_lens |= 1u128 << rule.norm.len().min(127);
            self.fields.insert(i, rule);
        }
    }

    /// Adds a path rule.
    pub fn add_path(&mut self, rule: PathRule) {
        self.path_lens |= 1u64 << rule.segs.len().min(63);
        self.paths.push(rule);
    }

    /// Adds a detector (a second one of the same kind is ignored).
    pub fn add_detector(&mut self, d: Detector, action: Action) {
        if self.detectors.iter().any(|(x, _)| *x == d) {
            return;
        }
        self.min_detect_len = self.min_detect_len.min(d.min_len());
        if d == Detector::CreditCard {
            self.card_action = Some(action);
        }
        self.keeps_tails |= matches!(action, Action::Partial { keep } if keep > 0);
        self.note_keep(action);
        self.detectors.push((d, action));
    }

    /// Adds a custom pattern.
    pub fn add_pattern(&mut self, p: Pattern) {
        self.keeps_tails |= matches!(p.action, Action::Partial { keep } if keep > 0);
        self.note_keep(p.action);
        self.patterns.push(p);
    }

    /// Notes the keep of a span action, for `mixed_keeps`.
    fn note_keep(&mut self, action: Action) {
        if let Action::Partial { keep } = action {
            match self.partial_keep {
                None => self.partial_keep = Some(keep),
                Some(k) => self.mixed_keeps |= k != keep,
            }
        }
    }

    /// Whether any rule uses the `hash` action.
    pub fn uses_hash(&self) -> bool {
        let hash = |a: &Action| *a == Action::Hash;
        self.fields.iter().any(|r| hash(&r.action))
            || self.paths.iter().any(|r| hash(&r.action))
            || self.detectors.iter().any(|(_, a)| hash(a))
            || self.patterns.iter().any(|p| hash(&p.action))
    }

    /// Whether a `hash` key is set.
    pub fn has_hash_key(&self) -> bool {
        self.hasher.is_some()
    }

    /// No rule at all: nothing would ever be masked.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
            && self.paths.is_empty()
            && self.detectors.is_empty()
            && self.patterns.is_empty()
    }

    /// Whether a body of `len` bytes is within `max_bytes`.
    pub fn admits(&self, len: usize) -> bool {
        len <= self.max_bytes
    }

    /// The name of a configured detector that matches somewhere in `s` (the configuration
    /// refuses a replacement that looks like a secret: records would seem to leak one).
    pub fn detector_matching(&self, s: &str) -> Option<&'static str> {
        self.detectors.iter().find_map(|&(d, _)| {
            let mut found = false;
            d.find(s, &mut |_, _| found = true);
            found.then_some(d.name())
        })
    }

    /// Masks one JSON-RPC message in place; returns the pointers (relative to the message,
    /// keys in their original case unless a key itself was masked) of what changed.
    pub fn mask_message(&self, msg: &mut Value) -> Vec<String> {
        self.mask_value_at(msg, "")
    }

    /// Masks `v`, the part of a message found at pointer `base` (`""` for the whole
    /// message, `/params/arguments`, `/error`, ...). A `base` that is not a pointer is
    /// taken as `""`.
    pub fn mask_value_at(&self, v: &mut Value, base: &str) -> Vec<String> {
        if self.is_empty() {
            return Vec::new();
        }
        let mut w = Walk::new(self, base);
        w.walk(v, None);
        w.out
    }

    /// Masks free text: the rules inside when it is JSON, detectors and patterns otherwise.
    pub fn mask_text<'s>(&self, s: &'s str) -> Cow<'s, str> {
        if self.is_empty() {
            return Cow::Borrowed(s);
        }
        let mut w = Walk::new(self, "");
        let mut owned = s.to_string();
        w.string(&mut owned);
        if w.changes == 0 {
            Cow::Borrowed(s)
        } else {
            Cow::Owned(owned)
        }
    }

    // ---- internals ----------------------------------------------------------------------

    fn field_action(&self, key: &str) -> Option<Action> {
        if self.fields.is_empty() {
            return None;
        }
        let mut buf = [0u8; MAX_FIELD_LEN];
        let mut n = 0usize;
        for c in key.bytes() {
            if c == b'-' || c == b'_' {
                continue;
            }
            *buf.get_mut(n)? = c.to_ascii_lowercase();
            n += 1;
        }
        if self.field_lens & (1u128 << n.min(127)) == 0 {
            return None;
        }
        let norm = buf.get(..n)?;
        self.fields
            .binary_search_by(|f| f.norm.as_slice().cmp(norm))
            .ok()
            .and_then(|i| self.fields.get(i))
            .map(|f| f.action)
    }

    fn scans_strings(&self) -> bool {
        !self.detectors.is_empty() || !self.patterns.is_empty()
    }

    /// Detector and pattern spans of `s`, filtered and merged, into `spans`.
    fn find_spans(&self, s: &str, scratch: &mut Scratch) {
        let Scratch { spans, runs } = scratch;
        spans.clear();
        if s.len() >= self.min_detect_len {
            let features = Features::of(s);
            let mut runs_found = false;
            for &(d, action) in &self.detectors {
                if d.applies(&features) {
                    if d.walks_digit_runs() && !runs_found {
                        detectors::digit_runs(s.as_bytes(), runs);
                        runs_found = true;
                    }
                    d.find_with(s, runs, &mut |start, end| {
                        spans.push(Span { start, end, action });
                    });
                }
            }
        }
        for p in &self.patterns {
            if p.literal.as_deref().is_some_and(|l| {
                detectors::literal_iter(s.as_bytes(), l.as_bytes())
                    .next()
                    .is_none()
            }) {
                continue;
            }
            for m in p.regex.find_iter(s) {
                if !m.is_empty() {
                    spans.push(Span {
                        start: m.start(),
                        end: m.end(),
                        action: p.action,
                    });
                }
            }
        }
        if spans.is_empty() {
            return;
        }
        // Most strings hold no masking output: one search spares a search per span. The
        // needles are short: `memchr` on the first byte, then a comparison, cost less than a
        // substring searcher in V8 on the bench's 64 KB answer (5.9% → 3.9% of the masking).
        let has_output = |needle: &str| {
            !needle.is_empty()
                && detectors::literal_iter(s.as_bytes(), needle.as_bytes())
                    .next()
                    .is_some()
        };
        if has_output(&self.replacement) || has_output(HASH_PREFIX) {
            spans.retain(|sp| !self.inside_mask_output(s, sp.start, sp.end));
        }
        if spans.len() < 2 {
            return;
        }
        // Each detector and pattern reports its spans in order: the list is a few sorted
        // runs, which the stable sort merges (the unstable one sorted 2,400 spans of a 64 KB
        // result from scratch, ~70 µs in V8). The two order equal spans alike, or their
        // order does not matter: the merge below keeps the first strongest action, and
        // actions of equal strength differ only in a `partial` keep. Only with partial keeps
        // that differ is the unstable sort's order kept as it was.
        let by_position = |a: &Span, b: &Span| a.start.cmp(&b.start).then(b.end.cmp(&a.end));
        if self.mixed_keeps {
            spans.sort_unstable_by(by_position);
        } else {
            spans.sort_by(by_position);
        }
        // Merge overlapping spans in place; the strongest action wins.
        let mut w = 0usize;
        for r in 0..spans.len() {
            let Some(&cur) = spans.get(r) else { break };
            match w.checked_sub(1).and_then(|i| spans.get_mut(i)) {
                Some(last) if cur.start < last.end => {
                    last.end = last.end.max(cur.end);
                    last.action = last.action.stronger(cur.action);
                }
                _ => {
                    if let Some(slot) = spans.get_mut(w) {
                        *slot = cur;
                    }
                    w += 1;
                }
            }
        }
        spans.truncate(w);
    }

    /// Whether `start..end` lies inside masking output already in `s` (the replacement or
    /// a `hash:` token), so masking it again would change masked output.
    fn inside_mask_output(&self, s: &str, start: usize, end: usize) -> bool {
        let r = self.replacement.as_str();
        inside_occurrence(s, start, end, r, r.len(), |_| true)
            || inside_occurrence(s, start, end, HASH_PREFIX, HASH_TOKEN_LEN, |p| {
                s.get(p..p + HASH_TOKEN_LEN).is_some_and(is_hash_token)
            })
    }

    /// Masks the detector and pattern spans of `s`; `None` when nothing changed.
    fn mask_str(&self, s: &str, scratch: &mut Scratch) -> Option<String> {
        if !self.scans_strings() {
            return None;
        }
        let mut out = self.mask_step(s, scratch)?;
        // What `partial` keeps visible can hold a new match (the tail of a long e-mail
        // address, digits a pattern wants): mask again until nothing changes, so masked
        // output is a fixed point.
        if self.keeps_tails {
            for _ in 0..3 {
                match self.mask_step(&out, scratch) {
                    Some(next) => out = next,
                    None => break,
                }
            }
        }
        Some(out)
    }

    /// One masking step over `s`; `None` when nothing changed.
    fn mask_step(&self, s: &str, scratch: &mut Scratch) -> Option<String> {
        self.find_spans(s, scratch);
        let spans = &scratch.spans;
        if spans.is_empty() {
            return None;
        }
        let mut out = String::with_capacity(s.len() + 16);
        let mut last = 0usize;
        for sp in spans.iter() {
            let start = floor_boundary(s, sp.start).max(last);
            let end = ceil_boundary(s, sp.end).max(start);
            out.push_str(s.get(last..start).unwrap_or_default());
            self.render(&mut out, sp.action, s.get(start..end).unwrap_or_default());
            last = end;
        }
        out.push_str(s.get(last..).unwrap_or_default());
        // (Texts of different lengths compare unequal without reading them.)
        (out != s).then_some(out)
    }

    /// Appends the masked form of `text`.
    fn render(&self, out: &mut String, action: Action, text: &str) {
        match action {
            Action::Redact => out.push_str(&self.replacement),
            Action::Partial { keep } => {
                let n = text.chars().count();
                if keep > 0 && n >= 2 * keep {
                    out.extend(std::iter::repeat_n('*', n - keep));
                    let tail = text.char_indices().nth(n - keep).map_or(0, |(i, _)| i);
                    out.push_str(text.get(tail..).unwrap_or_default());
                } else {
                    out.extend(std::iter::repeat_n('*', n));
                }
            }
            Action::Hash => match &self.hasher {
                Some(h) => {
                    let mut mac = h.clone();
                    mac.update(text.as_bytes());
                    let tag = mac.finalize().into_bytes();
                    out.push_str(HASH_PREFIX);
                    crate::audit::chain::push_hex(
                        out,
                        tag.get(..HASH_HEX_LEN / 2).unwrap_or_default(),
                    );
                }
                None => out.push_str(&self.replacement),
            },
        }
    }

    fn rendered(&self, action: Action, text: &str) -> String {
        let mut out = String::with_capacity(text.len().max(self.replacement.len()));
        self.render(&mut out, action, text);
        out
    }

    /// Masks a whole scalar (field and path rules); whether it changed.
    fn mask_scalar(&self, v: &mut Value, action: Action) -> bool {
        let new = match v {
            Value::String(s) => {
                if action == Action::Hash && is_hash_token(s) {
                    return false;
                }
                let new = self.rendered(action, s);
                if new == *s {
                    return false;
                }
                new
            }
            Value::Number(n) => self.rendered(action, &n.to_string()),
            Value::Bool(b) => self.rendered(action, if *b { "true" } else { "false" }),
            Value::Null | Value::Array(_) | Value::Object(_) => return false,
        };
        *v = Value::String(new);
        true
    }
}

fn is_hash_token(s: &str) -> bool {
    s.len() == HASH_TOKEN_LEN
        && s.strip_prefix(HASH_PREFIX).is_some_and(|hex| {
            hex.bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
        })
}

/// Whether some occurrence of `needle` at `p`, accepted by `valid(p)`, makes a token
/// `p..p + token_len` that contains `start..end`.
fn inside_occurrence(
    s: &str,
    start: usize,
    end: usize,
    needle: &str,
    token_len: usize,
    valid: impl Fn(usize) -> bool,
) -> bool {
    if needle.is_empty() || end.saturating_sub(start) > token_len {
        return false;
    }
    let lo = floor_boundary(s, end.saturating_sub(token_len));
    let hi = ceil_boundary(s, start.saturating_add(needle.len()));
    s.get(lo..hi).is_some_and(|window| {
        window.match_indices(needle).any(|(off, _)| {
            let p = lo + off;
            p <= start && end <= p + token_len && valid(p)
        })
    })
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_boundary(s: &str, mut i: usize) -> usize {
    while i < s.len() && !s.is_char_boundary(i) {
        i += 1;
    }
    i.min(s.len())
}

/// Whether a string may hold JSON worth parsing: an object, an array or a string literal.
pub(crate) fn looks_like_json(s: &str) -> bool {
    let t = s.trim_ascii().as_bytes();
    t.len() >= 2
        && matches!(
            (t.first(), t.last()),
            (Some(b'{'), Some(b'}')) | (Some(b'['), Some(b']')) | (Some(b'"'), Some(b'"'))
        )
}

/// One masking pass: the current pointer (escaped) with the offsets of its segments, the
/// span scratch buffer and the pointers reported so far. All buffers are reused across the
/// whole pass.
struct Walk<'m> {
    m: &'m Masker,
    ptr: String,
    segs: Vec<usize>,
    scratch: Scratch,
    out: Vec<String>,
    /// Changes made so far (several changes may share one reported pointer).
    changes: usize,
    embed: u32,
}

impl<'m> Walk<'m> {
    fn new(m: &'m Masker, base: &str) -> Self {
        let base = if base.starts_with('/') { base } else { "" };
        let mut segs = Vec::with_capacity(16);
        segs.extend(base.match_indices('/').map(|(i, _)| i + 1));
        let mut ptr = String::with_capacity(base.len() + 64);
        ptr.push_str(base);
        Walk {
            m,
            ptr,
            segs,
            scratch: Scratch::default(),
            out: Vec::new(),
            changes: 0,
            embed: 0,
        }
    }

    fn push_key(&mut self, key: &str) {
        self.segs.push(self.ptr.len() + 1);
        self.ptr.push('/');
        if key.contains(['~', '/']) {
            for c in key.chars() {
                match c {
                    '~' => self.ptr.push_str("~0"),
                    '/' => self.ptr.push_str("~1"),
                    c => self.ptr.push(c),
                }
            }
        } else {
            self.ptr.push_str(key);
        }
    }

    fn push_index(&mut self, i: usize) {
        self.segs.push(self.ptr.len() + 1);
        let _ = write!(self.ptr, "/{i}");
    }

    fn pop(&mut self) {
        if let Some(start) = self.segs.pop() {
            self.ptr.truncate(start.saturating_sub(1));
        }
    }

    fn seg(&self, i: usize) -> &str {
        let Some(&start) = self.segs.get(i) else {
            return "";
        };
        let end = self
            .segs
            .get(i + 1)
            .map_or(self.ptr.len(), |&next| next - 1);
        self.ptr.get(start..end).unwrap_or("")
    }

    /// Records a change at the current pointer.
    fn report(&mut self) {
        self.changes += 1;
        if self.out.last().map(String::as_str) != Some(self.ptr.as_str()) {
            self.out.push(self.ptr.clone());
        }
    }

    /// The action of the first path rule, else the field rule, matching this node.
    fn rule_action(&self, key: Option<&str>) -> Option<Action> {
        let depth = self.segs.len();
        if depth < 64 && self.m.path_lens & (1u64 << depth) != 0 {
            for rule in &self.m.paths {
                if rule.segs.len() == depth
                    && rule.segs.iter().enumerate().all(|(i, s)| match s {
                        Seg::Any => true,
                        Seg::Key(k) => k == self.seg(i),
                    })
                {
                    return Some(rule.action);
                }
            }
        }
        key.and_then(|k| self.m.field_action(k))
    }

    /// Never masked: tool schemas in `tools/list` results and correlating protocol members.
    fn exempt(&self) -> bool {
        match self.segs.len() {
            4 => {
                self.seg(0) == "result"
                    && self.seg(1) == "tools"
                    && matches!(self.seg(3), "inputSchema" | "outputSchema")
            }
            1..=3 => PROTOCOL_POINTERS.contains(&self.ptr.as_str()),
            _ => false,
        }
    }

    fn walk(&mut self, v: &mut Value, key: Option<&str>) {
        if let Some(action) = self.rule_action(key) {
            if !self.exempt() && self.mask_all(v, action, 0) {
                self.report();
            }
            return;
        }
        self.walk_node(v);
    }

    /// A node no path or field rule matched.
    fn walk_node(&mut self, v: &mut Value) {
        if self.exempt() {
            return;
        }
        if self.segs.len() > MAX_DEPTH {
            self.replace_whole(v);
            return;
        }
        match v {
            Value::Object(map) => {
                self.rename_keys(map, true);
                for (k, child) in map.iter_mut() {
                    self.push_key(k);
                    self.walk(child, Some(k));
                    self.pop();
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter_mut().enumerate() {
                    self.push_index(i);
                    self.walk(child, None);
                    self.pop();
                }
            }
            Value::String(s) => self.string(s),
            Value::Number(n) => {
                if let (Some(action), Some(u)) = (self.m.card_action, n.as_u64()) {
                    if u >= 1_000_000_000_000 {
                        let text = u.to_string();
                        let mut whole = false;
                        Detector::CreditCard.find(&text, &mut |s, e| {
                            whole |= s == 0 && e == text.len();
                        });
                        if whole {
                            // As a string it meets every detector and pattern on the next
                            // pass: meet them now, so masked output stays a fixed point.
                            let m = self.m;
                            let card = m.rendered(action, &text);
                            let card = m.mask_str(&card, &mut self.scratch).unwrap_or(card);
                            *v = Value::String(card);
                            self.report();
                        }
                    }
                }
            }
            Value::Bool(_) | Value::Null => {}
        }
    }

    /// A string no rule matched as a whole: embedded JSON, else detectors and patterns.
    fn string(&mut self, s: &mut String) {
        if looks_like_json(s) && self.embed >= MAX_EMBED && s.contains('\\') {
            // JSON nested this deep is not parsed; its escapes could hide what detectors
            // look for, so it goes whole.
            if *s != self.m.replacement {
                s.clone_from(&self.m.replacement);
                self.report();
            }
            return;
        }
        if self.embed < MAX_EMBED && looks_like_json(s) {
            if let Ok(mut inner) = serde_json::from_str::<Value>(s) {
                let before = self.changes;
                self.embed += 1;
                self.walk_node(&mut inner);
                self.embed -= 1;
                if self.changes > before {
                    match serde_json::to_string(&inner) {
                        Ok(text) => *s = text,
                        Err(_) => *s = self.m.replacement.clone(),
                    }
                }
                return;
            }
        }
        let m = self.m;
        if let Some(new) = m.mask_str(s, &mut self.scratch) {
            *s = new;
            self.report();
        }
    }

    /// Renames keys that detectors or patterns match; reports them when `report`.
    fn rename_keys(&mut self, map: &mut Map<String, Value>, report: bool) -> bool {
        let m = self.m;
        if !m.scans_strings() {
            return false;
        }
        let mut renames: Vec<(String, String)> = Vec::new();
        for k in map.keys() {
            if let Some(new) = m.mask_str(k, &mut self.scratch) {
                renames.push((k.clone(), new));
            }
        }
        let changed = !renames.is_empty();
        for (old, new) in renames {
            let Some(val) = map.remove(&old) else {
                continue;
            };
            let mut key = new.clone();
            let mut n = 2u32;
            while map.contains_key(&key) {
                key = format!("{new}#{n}");
                n = n.saturating_add(1);
            }
            if report {
                self.push_key(&key);
                self.report();
                self.pop();
            }
            map.insert(key, val);
        }
        changed
    }

    /// Masks every scalar under a node a rule matched; whether anything changed.
    fn mask_all(&mut self, v: &mut Value, action: Action, depth: usize) -> bool {
        if self.segs.len() + depth > MAX_DEPTH {
            return self.replace_whole(v);
        }
        match v {
            Value::Object(map) => {
                let mut changed = self.rename_keys(map, false);
                for child in map.values_mut() {
                    changed |= self.mask_all(child, action, depth + 1);
                }
                changed
            }
            Value::Array(items) => {
                let mut changed = false;
                for child in items.iter_mut() {
                    changed |= self.mask_all(child, action, depth + 1);
                }
                changed
            }
            scalar => self.m.mask_scalar(scalar, action),
        }
    }

    /// Too deep to inspect: the whole value becomes the replacement.
    fn replace_whole(&mut self, v: &mut Value) -> bool {
        if v.as_str() == Some(self.m.replacement.as_str()) {
            return false;
        }
        *v = Value::String(self.m.replacement.clone());
        self.report();
        true
    }
}
