//! Plugin configuration: parsed and compiled once in `on_configure`.
//!
//! Every key is spelled out and unknown keys are rejected, so a typo never turns into a
//! silently ignored setting. Errors name the key (`audit.flush_interval_ms`).

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::auth::jwt::{self, Alg, ClaimNames};
use crate::auth::{AuthSettings, JwksFetch, Mode, Provider};
use crate::mask::{self, Action, Detector, FieldRule, Masker, OnTooLarge, PathRule, Pattern};
use crate::policy::{Effect, Glob, Policy, Rule};

/// A configuration error: the key it concerns and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl ConfigError {
    fn new(key: &str, message: impl Into<String>) -> Self {
        Self {
            key: key.to_string(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "invalid configuration: {}", self.message)
        } else {
            write!(
                f,
                "invalid configuration at `{}`: {}",
                self.key, self.message
            )
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    audit: RawAudit,
    #[serde(default)]
    mcp: RawMcp,
    #[serde(default)]
    auth: Option<RawAuth>,
    #[serde(default)]
    masking: Option<RawMasking>,
    #[serde(default)]
    policy: Option<RawPolicy>,
    #[serde(default)]
    approvals: Option<RawApprovals>,
}

/// Where `review` calls are checked (`filter::approval`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApprovals {
    cluster: String,
    #[serde(default)]
    authority: Option<String>,
    #[serde(default = "d_check_path")]
    path: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default = "d_check_timeout")]
    timeout_ms: u64,
}

fn d_check_path() -> String {
    "/v1/check".into()
}
fn d_check_timeout() -> u64 {
    2000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    #[serde(default = "default_auth_mode")]
    mode: String,
    #[serde(default)]
    providers: Vec<RawProvider>,
    #[serde(default)]
    resource_metadata: Option<Map<String, Value>>,
    #[serde(default)]
    required_scopes: Vec<String>,
    #[serde(default)]
    forward_identity: bool,
    #[serde(default = "yes")]
    forward_token: bool,
    #[serde(default = "d_max_token")]
    max_token_bytes: usize,
    #[serde(default = "d_cache")]
    cache_max_entries: usize,
    #[serde(default = "d_wait")]
    jwks_wait_ms: u64,
}

fn default_auth_mode() -> String {
    "off".into()
}
fn yes() -> bool {
    true
}
fn d_max_token() -> usize {
    8192
}
fn d_cache() -> usize {
    1024
}
fn d_wait() -> u64 {
    3000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    #[serde(default)]
    name: Option<String>,
    issuer: String,
    #[serde(default)]
    audiences: Vec<String>,
    #[serde(default)]
    jwks: Option<Value>,
    #[serde(default)]
    jwks_uri: Option<String>,
    #[serde(default)]
    jwks_cluster: Option<String>,
    #[serde(default = "d_refresh")]
    jwks_refresh_s: u64,
    #[serde(default = "d_refetch")]
    jwks_refetch_min_s: u64,
    #[serde(default = "d_jwks_timeout")]
    jwks_timeout_ms: u64,
    #[serde(default)]
    algorithms: Option<Vec<String>>,
    #[serde(default)]
    claims: RawClaims,
    #[serde(default = "d_leeway")]
    leeway_s: i64,
    #[serde(default)]
    shared_secret: Option<String>,
}

fn d_refresh() -> u64 {
    600
}
fn d_refetch() -> u64 {
    5
}
fn d_jwks_timeout() -> u64 {
    3000
}
fn d_leeway() -> i64 {
    60
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClaims {
    subject: Option<String>,
    groups: Option<String>,
    email: Option<String>,
    client_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMasking {
    #[serde(default)]
    fields: Vec<NameOr<RawField>>,
    #[serde(default)]
    paths: Vec<NameOr<RawPath>>,
    #[serde(default)]
    detectors: Vec<NameOr<RawField>>,
    #[serde(default)]
    patterns: Vec<RawPattern>,
    #[serde(default)]
    replacement: Option<String>,
    #[serde(default)]
    action: RawAction,
    #[serde(default)]
    keep: Option<usize>,
    #[serde(default)]
    hash_key: Option<String>,
    #[serde(default)]
    responses: bool,
    #[serde(default)]
    requests: bool,
    #[serde(default)]
    max_bytes: Option<usize>,
    #[serde(default)]
    on_too_large: RawOnTooLarge,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum RawAction {
    #[default]
    Redact,
    Partial,
    Hash,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
enum RawOnTooLarge {
    #[default]
    Pass,
    Block,
}

/// A `fields` or `detectors` entry in object form.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawField {
    name: String,
    #[serde(default)]
    action: Option<RawAction>,
    #[serde(default)]
    keep: Option<usize>,
}

/// A `paths` entry in object form.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPath {
    path: String,
    #[serde(default)]
    action: Option<RawAction>,
    #[serde(default)]
    keep: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPattern {
    name: String,
    regex: String,
    #[serde(default)]
    action: Option<RawAction>,
    #[serde(default)]
    keep: Option<usize>,
}

/// A list entry written either as a bare string or as an object (`"password"` or
/// `{"name": "password", "action": "hash"}`); errors inside the object keep their key.
#[derive(Debug)]
enum NameOr<T> {
    Name(String),
    Full(T),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for NameOr<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for V<T> {
            type Value = NameOr<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an object")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(NameOr::Name(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(NameOr::Full)
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    default: RawEffect,
    #[serde(default)]
    rules: Vec<RawRule>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
enum RawEffect {
    #[default]
    Allow,
    Deny,
    Review,
}

impl From<RawEffect> for Effect {
    fn from(e: RawEffect) -> Effect {
        match e {
            RawEffect::Allow => Effect::Allow,
            RawEffect::Deny => Effect::Deny,
            RawEffect::Review => Effect::Review,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(default)]
    tools: Vec<String>,
    #[serde(default)]
    methods: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
    action: RawEffect,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMcp {
    #[serde(default)]
    paths: Vec<String>,
    #[serde(default)]
    max_body_bytes: Option<usize>,
    #[serde(default)]
    reject_session_identity_mismatch: bool,
    #[serde(default)]
    max_sessions: Option<usize>,
    #[serde(default)]
    record_notifications: bool,
    #[serde(default)]
    decode: Option<bool>,
    #[serde(default)]
    result_preview_bytes: usize,
    #[serde(default)]
    session_keys: Vec<String>,
    #[serde(default)]
    unsealed_sessions: Option<String>,
}

/// Sessions remembered per VM unless `mcp.max_sessions` says otherwise.
pub const DEFAULT_MAX_SESSIONS: usize = 10_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    cluster: String,
    #[serde(default)]
    authority: Option<String>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    format: Format,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default = "d_flush")]
    flush_interval_ms: u64,
    #[serde(default = "d_batch")]
    batch_max_records: usize,
    #[serde(default = "d_batch_bytes")]
    batch_max_bytes: usize,
    #[serde(default = "d_timeout")]
    timeout_ms: u64,
    #[serde(default = "d_retries")]
    max_retries: u32,
    #[serde(default = "d_buffer")]
    buffer_max_records: usize,
    #[serde(default)]
    on_buffer_full: OnBufferFull,
    #[serde(default)]
    hmac_key: Option<String>,
    #[serde(default)]
    signing_key: Option<String>,
    #[serde(default = "d_checkpoint")]
    checkpoint_interval_s: u64,
    #[serde(default = "d_shutdown")]
    shutdown_timeout_ms: u64,
    #[serde(default = "d_drain_path")]
    drain_path: String,
}

fn d_drain_path() -> String {
    "/.well-known/mcptrail/drain".into()
}

fn d_checkpoint() -> u64 {
    60
}
fn d_shutdown() -> u64 {
    5000
}
fn d_flush() -> u64 {
    1000
}
fn d_batch() -> usize {
    100
}
fn d_batch_bytes() -> usize {
    1 << 20
}
fn d_timeout() -> u64 {
    5000
}
fn d_retries() -> u32 {
    5
}
fn d_buffer() -> usize {
    10_000
}

/// Wire format of shipped batches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One record per line, `application/x-ndjson`.
    #[default]
    Ndjson,
    /// OTLP/HTTP JSON logs (`/v1/logs` of an OpenTelemetry Collector).
    Otlp,
}

/// What to do when the record buffer is full.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnBufferFull {
    /// Keep serving; count what was lost in an `audit.dropped` record.
    #[default]
    Drop,
    /// Answer new MCP requests with 503 until there is room again.
    Reject,
}

/// Compiled audit shipping settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSettings {
    pub cluster: String,
    pub authority: String,
    pub path: String,
    pub format: Format,
    pub headers: Vec<(String, String)>,
    pub flush_interval_ms: u64,
    pub batch_max_records: usize,
    pub batch_max_bytes: usize,
    pub timeout_ms: u64,
    /// 0 means retry without limit.
    pub max_retries: u32,
    pub buffer_max_records: usize,
    pub on_buffer_full: OnBufferFull,
    pub hmac_key: Option<Vec<u8>>,
    /// Ed25519 seed that signs `audit.checkpoint` and `audit.closed` records.
    pub signing_key: Option<[u8; 32]>,
    /// Seconds between signed checkpoints (0: only in `audit.closed`).
    pub checkpoint_interval_s: u64,
    /// How long a VM going away may take to ship what it holds before it reports done.
    pub shutdown_timeout_ms: u64,
    /// `POST` here from a loopback address: every VM of the process closes its stream and
    /// ships what it holds at once (a stop's first step; see docs/operations.md).
    pub drain_path: String,
}

/// Which requests are MCP traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpSettings {
    /// Path prefixes; empty means every path.
    pub paths: Vec<String>,
    /// Largest request or JSON response body decoded; larger ones pass with a `decode.error`.
    pub max_body_bytes: usize,
    /// Refuse a request whose session was started by another identity.
    pub reject_session_identity_mismatch: bool,
    /// Sessions remembered per VM.
    pub max_sessions: usize,
    /// Record server notifications and server-to-client requests (else only counted).
    pub record_notifications: bool,
    /// Decode and record MCP traffic; `false` keeps only authentication (and its refusals).
    pub decode: bool,
    /// How much of each reply's `result` the command record keeps (0: none).
    pub result_preview_bytes: usize,
    /// Keys that seal session ids (`mcp::seal`): the first seals, all open. Empty: session
    /// ids pass unsealed and a session's owner is known only to the VM that saw it start.
    pub session_keys: Vec<Vec<u8>>,
    /// What to do with a session id that is not sealed, when keys are configured.
    pub unsealed_sessions: Unsealed,
}

/// `mcp.unsealed_sessions`: a presented session id that is not of the sealed form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsealed {
    /// Answered as the server answers an unknown session (404): the client starts a new one.
    Refuse,
    /// Forwarded as it is, flagged `mcp.session_unsealed` (migration: sessions opened before
    /// ids were sealed). Such a session's owner is not checked across workers.
    Pass,
}

/// Shortest session key (decoded).
pub const MIN_SESSION_KEY_BYTES: usize = 32;

impl McpSettings {
    /// Whether a request path (query string included or not) is in scope.
    pub fn in_scope(&self, path: &str) -> bool {
        if self.paths.is_empty() {
            return true;
        }
        let path = path.split(['?', '#']).next().unwrap_or(path);
        self.paths.iter().any(|p| {
            path.strip_prefix(p.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/') || p.ends_with('/'))
        })
    }
}

/// The compiled configuration the filter runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub audit: AuditSettings,
    pub mcp: McpSettings,
    /// The compiled `masking` section (empty, [`Masker::is_empty`], when absent).
    pub masking: Masker,
    pub auth: AuthSettings,
    pub policy: Policy,
    /// The approval service `review` rules ask (`None`: no rule may say `review`).
    pub approvals: Option<ApprovalSettings>,
}

/// The compiled `approvals` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalSettings {
    pub cluster: String,
    pub authority: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub timeout_ms: u64,
}

/// Default bound for a decoded body.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;

impl Config {
    /// Parses and validates the plugin configuration bytes.
    pub fn parse(bytes: &[u8]) -> Result<Config, ConfigError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ConfigError::new(
                "",
                "the plugin configuration is empty; `audit` is required",
            ));
        }
        let raw: RawConfig = serde_json::from_slice(bytes)
            .map_err(|e| ConfigError::new(&key_at(bytes, &e), e.to_string()))?;
        raw.compile()
    }
}

/// The key a parse error sits under (`audit.hmac_key`, `policy.rules[2].tool`), read from the
/// position serde_json reports: the keys and indices still open at that byte. This replaces
/// a path-tracking deserializer whose per-type wrappers made up a twentieth of the module.
/// Each error serde_json raises for the configuration lies just past what it names: a key
/// (unknown field), a value (wrong type or variant), or the `}` of an object missing a field.
fn key_at(bytes: &[u8], e: &serde_json::Error) -> String {
    enum Open {
        Object { key: Option<String>, value: bool },
        Array(usize),
    }
    let line_start = bytes
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .map(|(i, _)| i + 1)
        .nth(e.line().saturating_sub(2));
    let end = match (e.line(), line_start) {
        (0, _) => 0,
        (1, _) => e.column(),
        (_, Some(start)) => start + e.column(),
        (_, None) => bytes.len(),
    };
    let text = bytes.get(..end).unwrap_or(bytes);
    let mut open: Vec<Open> = Vec::new();
    let mut i = 0;
    while let Some(&b) = text.get(i) {
        i += 1;
        match (b, open.last_mut()) {
            (b'{', _) => open.push(Open::Object {
                key: None,
                value: false,
            }),
            (b'[', _) => open.push(Open::Array(0)),
            (b'}' | b']', _) => {
                open.pop();
            }
            (b':', Some(Open::Object { value, .. })) => *value = true,
            (b',', Some(Open::Object { key, value })) => (*key, *value) = (None, false),
            (b',', Some(Open::Array(n))) => *n += 1,
            (b'"', top) => {
                let start = i - 1;
                while let Some(&c) = text.get(i) {
                    i += if c == b'\\' { 2 } else { 1 };
                    if c == b'"' {
                        break;
                    }
                }
                if let Some(Open::Object { key, value: false }) = top {
                    let raw = text.get(start..i).unwrap_or_default();
                    *key = serde_json::from_slice::<String>(raw).ok();
                }
            }
            _ => {}
        }
    }
    let mut path = String::new();
    for o in &open {
        match o {
            Open::Object { key: Some(k), .. } => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
            }
            Open::Object { key: None, .. } => break,
            Open::Array(n) => path.push_str(&format!("[{n}]")),
        }
    }
    path
}

impl RawConfig {
    fn compile(self) -> Result<Config, ConfigError> {
        let audit = self.audit.compile()?;
        let masking = match self.masking {
            Some(m) => m.compile(audit.hmac_key.as_deref())?,
            None => Masker::default(),
        };
        let config = Config {
            audit,
            masking,
            mcp: self.mcp.compile()?,
            auth: match self.auth {
                Some(a) => a.compile()?,
                None => AuthSettings::off(),
            },
            policy: match self.policy {
                Some(p) => p.compile()?,
                None => Policy::allow_all(),
            },
            approvals: self.approvals.map(RawApprovals::compile).transpose()?,
        };
        if let Some(i) = config.policy.first_review() {
            let key = format!("policy.rules[{i}].action");
            if config.auth.mode == crate::auth::Mode::Off {
                return Err(ConfigError::new(
                    &key,
                    "`review` needs `auth`: an approval is bound to a verified caller",
                ));
            }
            if config.approvals.is_none() {
                return Err(ConfigError::new(
                    &key,
                    "`review` needs the `approvals` section (where calls are checked)",
                ));
            }
        }
        if !config.mcp.decode && config.policy.can_deny() {
            return Err(ConfigError::new(
                "mcp.decode",
                "policy rules need the request decoded; `decode: false` cannot enforce them",
            ));
        }
        Ok(config)
    }
}

impl RawMasking {
    fn compile(self, audit_hmac_key: Option<&[u8]>) -> Result<Masker, ConfigError> {
        let default_keep = self.keep.unwrap_or(mask::DEFAULT_KEEP);
        if default_keep > mask::MAX_KEEP {
            return Err(ConfigError::new(
                "masking.keep",
                format!("must be at most {}", mask::MAX_KEEP),
            ));
        }
        let resolve = |key: &str, action: Option<RawAction>, keep: Option<usize>| {
            let raw = action.unwrap_or(self.action);
            if keep.is_some() && raw != RawAction::Partial {
                return Err(ConfigError::new(
                    &format!("{key}.keep"),
                    "`keep` applies to the `partial` action only",
                ));
            }
            let keep = keep.unwrap_or(default_keep);
            if keep > mask::MAX_KEEP {
                return Err(ConfigError::new(
                    &format!("{key}.keep"),
                    format!("must be at most {}", mask::MAX_KEEP),
                ));
            }
            Ok(match raw {
                RawAction::Redact => Action::Redact,
                RawAction::Partial => Action::Partial { keep },
                RawAction::Hash => Action::Hash,
            })
        };
        let hash_key = match (&self.hash_key, audit_hmac_key) {
            (Some(b64), _) => Some(b64_secret("masking.hash_key", b64, 16)?),
            (None, Some(audit)) => Some(mask::derive_hash_key(audit)),
            (None, None) => None,
        };
        let replacement = self
            .replacement
            .as_deref()
            .unwrap_or(mask::DEFAULT_REPLACEMENT);
        if replacement.is_empty() || replacement.len() > 256 {
            // Empty, text on both sides of a removed secret could join into a new match.
            return Err(ConfigError::new(
                "masking.replacement",
                "must be 1 to 256 bytes",
            ));
        }
        let mut m = Masker::new(replacement, hash_key.as_deref());
        for (i, f) in self.fields.iter().enumerate() {
            let key = format!("masking.fields[{i}]");
            let (name, action) = match f {
                NameOr::Name(n) => (n, resolve(&key, None, None)?),
                NameOr::Full(r) => (&r.name, resolve(&key, r.action, r.keep)?),
            };
            m.add_field(FieldRule::new(name, action).map_err(|e| ConfigError::new(&key, e))?);
        }
        for (i, p) in self.paths.iter().enumerate() {
            let key = format!("masking.paths[{i}]");
            let (path, action) = match p {
                NameOr::Name(n) => (n, resolve(&key, None, None)?),
                NameOr::Full(r) => (&r.path, resolve(&key, r.action, r.keep)?),
            };
            m.add_path(PathRule::parse(path, action).map_err(|e| ConfigError::new(&key, e))?);
        }
        let mut seen = Vec::new();
        for (i, d) in self.detectors.iter().enumerate() {
            let key = format!("masking.detectors[{i}]");
            let (name, action) = match d {
                NameOr::Name(n) => (n, resolve(&key, None, None)?),
                NameOr::Full(r) => (&r.name, resolve(&key, r.action, r.keep)?),
            };
            let det = Detector::from_name(name).ok_or_else(|| {
                let known: Vec<&str> = Detector::ALL.iter().map(|d| d.name()).collect();
                ConfigError::new(
                    &key,
                    format!("unknown detector `{name}`; known: {}", known.join(", ")),
                )
            })?;
            if seen.contains(&det) {
                return Err(ConfigError::new(&key, format!("`{name}` is listed twice")));
            }
            seen.push(det);
            m.add_detector(det, action);
        }
        let mut names: Vec<&str> = Vec::new();
        for (i, p) in self.patterns.iter().enumerate() {
            let key = format!("masking.patterns[{i}]");
            if p.name.trim().is_empty() {
                return Err(ConfigError::new(
                    &format!("{key}.name"),
                    "must not be empty",
                ));
            }
            if names.contains(&p.name.as_str()) {
                return Err(ConfigError::new(
                    &format!("{key}.name"),
                    format!("two patterns are named `{}`", p.name),
                ));
            }
            names.push(&p.name);
            let action = resolve(&key, p.action, p.keep)?;
            let pattern = Pattern::new(&p.name, &p.regex, action).map_err(|e| {
                ConfigError::new(
                    &format!("{key}.regex"),
                    format!("pattern `{}`: invalid regex: {e}", p.name),
                )
            })?;
            m.add_pattern(pattern);
        }
        if m.uses_hash() && !m.has_hash_key() {
            return Err(ConfigError::new(
                "masking.hash_key",
                "the `hash` action needs `masking.hash_key` or `audit.hmac_key`",
            ));
        }
        if let Some(detector) = m.detector_matching(replacement) {
            return Err(ConfigError::new(
                "masking.replacement",
                format!("`{replacement}` looks like what detector `{detector}` masks"),
            ));
        }
        m.responses = self.responses;
        m.requests = self.requests;
        m.max_bytes = self.max_bytes.unwrap_or(mask::DEFAULT_MAX_BYTES);
        if m.max_bytes == 0 {
            return Err(ConfigError::new(
                "masking.max_bytes",
                "must be greater than 0",
            ));
        }
        m.on_too_large = match self.on_too_large {
            RawOnTooLarge::Pass => OnTooLarge::Pass,
            RawOnTooLarge::Block => OnTooLarge::Block,
        };
        Ok(m)
    }
}

impl RawPolicy {
    fn compile(self) -> Result<Policy, ConfigError> {
        let mut rules = Vec::with_capacity(self.rules.len());
        for (i, r) in self.rules.into_iter().enumerate() {
            if r.tools.is_empty() && r.methods.is_empty() {
                return Err(ConfigError::new(
                    &format!("policy.rules[{i}]"),
                    "a rule needs `tools` or `methods`",
                ));
            }
            rules.push(Rule {
                tools: r.tools.iter().map(|t| Glob::new(t)).collect(),
                methods: r.methods.iter().map(|m| Glob::new(m)).collect(),
                groups: r.groups,
                effect: r.action.into(),
            });
        }
        if matches!(self.default, RawEffect::Review) {
            return Err(ConfigError::new(
                "policy.default",
                "must be `allow` or `deny`: `review` applies to the calls a rule names",
            ));
        }
        Ok(Policy {
            default: self.default.into(),
            rules,
        })
    }
}

/// Splits an `http(s)://authority/path` URL.
pub fn split_url(url: &str) -> Option<(&str, &str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (rest.get(..i)?, rest.get(i..)?),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    Some((scheme, authority, path))
}

fn b64_secret(key: &str, v: &str, min: usize) -> Result<Vec<u8>, ConfigError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(v.trim())
        .map_err(|e| ConfigError::new(key, format!("not base64: {e}")))?;
    if bytes.len() < min {
        return Err(ConfigError::new(
            key,
            format!("must decode to at least {min} bytes"),
        ));
    }
    Ok(bytes)
}

impl RawAuth {
    fn compile(self) -> Result<AuthSettings, ConfigError> {
        let mode = match self.mode.as_str() {
            "required" => Mode::Required,
            "optional" => Mode::Optional,
            "off" => Mode::Off,
            other => {
                return Err(ConfigError::new(
                    "auth.mode",
                    format!("unknown mode `{other}`; expected `required`, `optional` or `off`"),
                ))
            }
        };
        if mode != Mode::Off && self.providers.is_empty() {
            return Err(ConfigError::new(
                "auth.providers",
                "at least one provider is needed unless `mode` is `off`",
            ));
        }
        let mut providers: Vec<Provider> = Vec::with_capacity(self.providers.len());
        for (i, p) in self.providers.into_iter().enumerate() {
            let provider = p.compile(i)?;
            if providers.iter().any(|q| q.issuer == provider.issuer) {
                return Err(ConfigError::new(
                    &format!("auth.providers[{i}].issuer"),
                    "two providers have the same issuer",
                ));
            }
            providers.push(provider);
        }
        if let Some(m) = &self.resource_metadata {
            if m.get("resource").is_some_and(|r| !r.is_string()) {
                return Err(ConfigError::new(
                    "auth.resource_metadata.resource",
                    "must be a URL string",
                ));
            }
            if let Some(a) = m.get("authorization_servers") {
                if !a.as_array().is_some_and(|a| a.iter().all(Value::is_string)) {
                    return Err(ConfigError::new(
                        "auth.resource_metadata.authorization_servers",
                        "must be an array of URL strings",
                    ));
                }
            }
        }
        if self.max_token_bytes < 256 {
            return Err(ConfigError::new(
                "auth.max_token_bytes",
                "must be at least 256",
            ));
        }
        Ok(AuthSettings {
            mode,
            providers,
            resource_metadata: self.resource_metadata,
            required_scopes: self.required_scopes,
            forward_identity: self.forward_identity,
            forward_token: self.forward_token,
            max_token_bytes: self.max_token_bytes,
            cache_max_entries: self.cache_max_entries,
            jwks_wait_ms: self.jwks_wait_ms,
        })
    }
}

impl RawProvider {
    fn compile(self, i: usize) -> Result<Provider, ConfigError> {
        let key = |k: &str| format!("auth.providers[{i}].{k}");
        if self.issuer.trim().is_empty() {
            return Err(ConfigError::new(&key("issuer"), "must not be empty"));
        }
        if self.audiences.is_empty() {
            return Err(ConfigError::new(
                &key("audiences"),
                "list the audiences (the MCP resource URL) tokens must be issued for",
            ));
        }
        let shared_secret = self
            .shared_secret
            .as_deref()
            .map(|s| b64_secret(&key("shared_secret"), s, 32))
            .transpose()?;
        let algorithms = match &self.algorithms {
            None => {
                let mut a = Alg::ASYMMETRIC.to_vec();
                if shared_secret.is_some() {
                    a.extend([Alg::HS256, Alg::HS384, Alg::HS512]);
                }
                a
            }
            Some(list) => {
                let mut out = Vec::with_capacity(list.len());
                for a in list {
                    let alg = Alg::parse(a).ok_or_else(|| {
                        ConfigError::new(&key("algorithms"), format!("unknown algorithm `{a}`"))
                    })?;
                    if matches!(alg, Alg::HS256 | Alg::HS384 | Alg::HS512)
                        && shared_secret.is_none()
                    {
                        return Err(ConfigError::new(
                            &key("algorithms"),
                            format!("`{a}` needs `shared_secret`"),
                        ));
                    }
                    out.push(alg);
                }
                out
            }
        };
        let inline_keys = match &self.jwks {
            None => Vec::new(),
            Some(v) => {
                let (keys, skipped) = jwt::parse_jwks(v.to_string().as_bytes())
                    .map_err(|e| ConfigError::new(&key("jwks"), e))?;
                if !skipped.is_empty() {
                    return Err(ConfigError::new(&key("jwks"), skipped.join("; ")));
                }
                keys
            }
        };
        let fetch = match (&self.jwks_uri, &self.jwks_cluster) {
            (None, None) => None,
            (Some(uri), Some(cluster)) => {
                let (_, authority, path) = split_url(uri)
                    .ok_or_else(|| ConfigError::new(&key("jwks_uri"), "must be an http(s) URL"))?;
                if cluster.trim().is_empty() {
                    return Err(ConfigError::new(
                        &key("jwks_cluster"),
                        "must name an Envoy cluster",
                    ));
                }
                if self.jwks_refresh_s == 0 || self.jwks_timeout_ms == 0 {
                    return Err(ConfigError::new(
                        &key("jwks_refresh_s"),
                        "`jwks_refresh_s` and `jwks_timeout_ms` must be greater than 0",
                    ));
                }
                Some(JwksFetch {
                    cluster: cluster.clone(),
                    authority: authority.to_string(),
                    path: path.to_string(),
                    refresh_ms: self.jwks_refresh_s.saturating_mul(1000),
                    refetch_min_ms: self.jwks_refetch_min_s.saturating_mul(1000),
                    timeout_ms: self.jwks_timeout_ms,
                })
            }
            (Some(_), None) => {
                return Err(ConfigError::new(
                    &key("jwks_cluster"),
                    "`jwks_uri` needs `jwks_cluster`",
                ))
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    &key("jwks_uri"),
                    "`jwks_cluster` needs `jwks_uri`",
                ))
            }
        };
        if inline_keys.is_empty() && fetch.is_none() && shared_secret.is_none() {
            return Err(ConfigError::new(
                &key("jwks"),
                "a provider needs keys: `jwks`, `jwks_uri` + `jwks_cluster`, or `shared_secret`",
            ));
        }
        if !(0..=3600).contains(&self.leeway_s) {
            return Err(ConfigError::new(
                &key("leeway_s"),
                "must be between 0 and 3600",
            ));
        }
        let d = ClaimNames::default();
        Ok(Provider {
            name: self.name.unwrap_or_else(|| self.issuer.clone()),
            issuer: self.issuer,
            audiences: self.audiences,
            algorithms,
            claims: ClaimNames {
                subject: self.claims.subject.unwrap_or(d.subject),
                groups: self.claims.groups.unwrap_or(d.groups),
                email: self.claims.email.unwrap_or(d.email),
                client_id: self.claims.client_id.unwrap_or(d.client_id),
            },
            leeway_s: self.leeway_s,
            inline_keys,
            shared_secret,
            fetch,
        })
    }
}

impl RawMcp {
    fn compile(self) -> Result<McpSettings, ConfigError> {
        for p in &self.paths {
            if !p.starts_with('/') {
                return Err(ConfigError::new(
                    "mcp.paths",
                    format!("`{p}` must start with `/`"),
                ));
            }
        }
        let max_body_bytes = self.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
        if max_body_bytes == 0 {
            return Err(ConfigError::new(
                "mcp.max_body_bytes",
                "must be greater than 0",
            ));
        }
        let session_keys = self
            .session_keys
            .iter()
            .enumerate()
            .map(|(i, k)| b64_secret(&format!("mcp.session_keys[{i}]"), k, MIN_SESSION_KEY_BYTES))
            .collect::<Result<Vec<_>, _>>()?;
        let unsealed_sessions = match self.unsealed_sessions.as_deref() {
            None | Some("refuse") => Unsealed::Refuse,
            Some("pass") => Unsealed::Pass,
            Some(other) => {
                return Err(ConfigError::new(
                    "mcp.unsealed_sessions",
                    format!("`{other}` is not one of refuse, pass"),
                ))
            }
        };
        if self.reject_session_identity_mismatch && session_keys.is_empty() {
            return Err(ConfigError::new(
                "mcp.reject_session_identity_mismatch",
                "needs mcp.session_keys: without them a session's owner is known only to the \
                 worker that saw it start, and other workers and replicas could not refuse \
                 another identity",
            ));
        }
        Ok(McpSettings {
            session_keys,
            unsealed_sessions,
            paths: self.paths,
            max_body_bytes,
            reject_session_identity_mismatch: self.reject_session_identity_mismatch,
            // (Option, not a serde default: a missing `mcp` section is `RawMcp::default()`.)
            max_sessions: self.max_sessions.unwrap_or(DEFAULT_MAX_SESSIONS).max(1),
            record_notifications: self.record_notifications,
            decode: self.decode.unwrap_or(true),
            result_preview_bytes: self.result_preview_bytes,
        })
    }
}

/// Extra headers of a callout (`audit.headers`, `approvals.headers`), checked.
fn callout_headers(
    key: &str,
    map: BTreeMap<String, String>,
) -> Result<Vec<(String, String)>, ConfigError> {
    let mut headers = Vec::with_capacity(map.len());
    for (name, value) in map {
        if !valid_header_name(&name) {
            return Err(ConfigError::new(
                key,
                format!("`{name}` is not a lowercase HTTP header name"),
            ));
        }
        if matches!(name.as_str(), "content-type" | "content-length" | "host") {
            return Err(ConfigError::new(
                key,
                format!("`{name}` is set by the filter and cannot be overridden"),
            ));
        }
        if value.bytes().any(|c| c == b'\r' || c == b'\n' || c == 0) {
            return Err(ConfigError::new(
                key,
                format!("the value of `{name}` contains a control character"),
            ));
        }
        headers.push((name, value));
    }
    Ok(headers)
}

impl RawApprovals {
    fn compile(self) -> Result<ApprovalSettings, ConfigError> {
        if self.cluster.trim().is_empty() {
            return Err(ConfigError::new(
                "approvals.cluster",
                "must name an Envoy cluster",
            ));
        }
        if !self.path.starts_with('/') {
            return Err(ConfigError::new("approvals.path", "must start with `/`"));
        }
        if self.timeout_ms == 0 {
            return Err(ConfigError::new(
                "approvals.timeout_ms",
                "must be greater than 0",
            ));
        }
        Ok(ApprovalSettings {
            headers: callout_headers("approvals.headers", self.headers)?,
            authority: self.authority.unwrap_or_else(|| self.cluster.clone()),
            cluster: self.cluster,
            path: self.path,
            timeout_ms: self.timeout_ms,
        })
    }
}

fn valid_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'_')
}

impl RawAudit {
    fn compile(self) -> Result<AuditSettings, ConfigError> {
        if self.cluster.trim().is_empty() {
            return Err(ConfigError::new(
                "audit.cluster",
                "must name an Envoy cluster",
            ));
        }
        let path = self.path.unwrap_or_else(|| match self.format {
            Format::Ndjson => "/ingest".into(),
            Format::Otlp => "/v1/logs".into(),
        });
        if !path.starts_with('/') {
            return Err(ConfigError::new("audit.path", "must start with `/`"));
        }
        let headers = callout_headers("audit.headers", self.headers)?;
        let positive = |key: &str, v: u64| {
            if v == 0 {
                Err(ConfigError::new(key, "must be greater than 0"))
            } else {
                Ok(())
            }
        };
        positive("audit.flush_interval_ms", self.flush_interval_ms)?;
        positive("audit.batch_max_records", self.batch_max_records as u64)?;
        positive("audit.batch_max_bytes", self.batch_max_bytes as u64)?;
        positive("audit.timeout_ms", self.timeout_ms)?;
        positive("audit.buffer_max_records", self.buffer_max_records as u64)?;
        if self.buffer_max_records < self.batch_max_records {
            return Err(ConfigError::new(
                "audit.buffer_max_records",
                "must be at least `audit.batch_max_records`",
            ));
        }
        let hmac_key = self
            .hmac_key
            .map(|b64| b64_secret("audit.hmac_key", &b64, 16))
            .transpose()?;
        let signing_key = match self.signing_key {
            None => None,
            Some(b64) => {
                let seed = b64_secret("audit.signing_key", &b64, 32)?;
                Some(<[u8; 32]>::try_from(seed.as_slice()).map_err(|_| {
                    ConfigError::new(
                        "audit.signing_key",
                        "must decode to exactly 32 bytes (an Ed25519 seed)",
                    )
                })?)
            }
        };
        positive("audit.shutdown_timeout_ms", self.shutdown_timeout_ms)?;
        if !self.drain_path.is_empty() && !self.drain_path.starts_with('/') {
            return Err(ConfigError::new(
                "audit.drain_path",
                "must start with `/` (or be empty: no drain endpoint)",
            ));
        }
        Ok(AuditSettings {
            authority: self.authority.unwrap_or_else(|| self.cluster.clone()),
            cluster: self.cluster,
            path,
            format: self.format,
            headers,
            flush_interval_ms: self.flush_interval_ms,
            batch_max_records: self.batch_max_records,
            batch_max_bytes: self.batch_max_bytes,
            timeout_ms: self.timeout_ms,
            max_retries: self.max_retries,
            buffer_max_records: self.buffer_max_records,
            on_buffer_full: self.on_buffer_full,
            hmac_key,
            signing_key,
            checkpoint_interval_s: self.checkpoint_interval_s,
            shutdown_timeout_ms: self.shutdown_timeout_ms,
            drain_path: self.drain_path,
        })
    }
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn err(json: &str) -> ConfigError {
        Config::parse(json.as_bytes()).unwrap_err()
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = Config::parse(br#"{"audit":{"cluster":"audit_collector"}}"#).unwrap();
        assert_eq!(c.audit.authority, "audit_collector");
        assert_eq!(c.audit.path, "/ingest");
        assert_eq!(c.audit.format, Format::Ndjson);
        assert_eq!(c.audit.flush_interval_ms, 1000);
        assert_eq!(c.audit.batch_max_records, 100);
        assert_eq!(c.audit.max_retries, 5);
        assert_eq!(c.audit.buffer_max_records, 10_000);
        assert_eq!(c.audit.on_buffer_full, OnBufferFull::Drop);
        assert!(c.mcp.paths.is_empty());
        assert_eq!(c.mcp.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
    }

    #[test]
    fn full_audit_section() {
        let c = Config::parse(
            br#"{"audit":{"cluster":"c","authority":"collector","path":"/v1/logs","format":"otlp",
            "headers":{"x-api-key":"k"},"flush_interval_ms":50,"batch_max_records":10,
            "timeout_ms":100,"max_retries":0,"buffer_max_records":20,"on_buffer_full":"reject",
            "hmac_key":"c2VjcmV0LWtleS1mb3ItZGVtby1vbmx5"},"mcp":{"paths":["/mcp"]},"auth":{"mode":"off"}}"#,
        )
        .unwrap();
        assert_eq!(c.audit.format, Format::Otlp);
        assert_eq!(c.audit.headers, vec![("x-api-key".into(), "k".into())]);
        assert_eq!(c.audit.on_buffer_full, OnBufferFull::Reject);
        assert_eq!(
            c.audit.hmac_key.as_deref(),
            Some(&b"secret-key-for-demo-only"[..])
        );
    }

    #[test]
    fn errors_name_the_key() {
        assert_eq!(err("").key, "");
        assert!(err("{}").message.starts_with("missing field `audit`"));
        let e = err(r#"{"audit":{}}"#);
        assert!(e.message.starts_with("missing field `cluster`"), "{e}");
        assert_eq!(e.key, "audit");
        let e = err(r#"{"audit":{"cluster":"c","flush_interval":5}}"#);
        assert_eq!(e.key, "audit.flush_interval");
        assert!(e.message.contains("unknown field `flush_interval`"), "{e}");
        assert_eq!(
            err(r#"{"audit":{"cluster":"c","batch_max_records":"x"}}"#).key,
            "audit.batch_max_records"
        );
        assert_eq!(
            err(r#"{"audit":{"cluster":"c","format":"xml"}}"#).key,
            "audit.format"
        );
        assert_eq!(
            err(r#"{"audit":{"cluster":"c","hmac_key":"!!"}}"#).key,
            "audit.hmac_key"
        );
        assert_eq!(
            err(r#"{"audit":{"cluster":"c","hmac_key":"c2hvcnQ="}}"#).key,
            "audit.hmac_key"
        );
        assert_eq!(err(r#"{"audit":{"cluster":" "}}"#).key, "audit.cluster");
        assert_eq!(
            err(r#"{"audit":{"cluster":"c","timeout_ms":0}}"#).key,
            "audit.timeout_ms"
        );
        assert_eq!(
            err(r#"{"audit":{"cluster":"c","headers":{"X-Key":"v"}}}"#).key,
            "audit.headers"
        );
        assert_eq!(
            err(r#"{"audit":{"cluster":"c","headers":{"x":"a\nb"}}}"#).key,
            "audit.headers"
        );
        assert_eq!(
            err(r#"{"audit":{"cluster":"c"},"mcp":{"paths":["mcp"]}}"#).key,
            "mcp.paths"
        );
        assert_eq!(
            err(r#"{"audit":{"cluster":"c"},"auth":{"mode":"sometimes"}}"#).key,
            "auth.mode"
        );
        assert_eq!(err(r#"{"audit":{"cluster":"c"},"bogus":1}"#).key, "bogus");
        // Paths through arrays, escaped keys and pretty-printed (multi-line) configurations.
        let rules = r#"{"audit":{"cluster":"c"},"policy":{"rules":[{"tools":["a"],"action":"allow"},{"tools":["b"],"action":"maybe"}]}}"#;
        assert_eq!(err(rules).key, "policy.rules[1].action");
        let pretty = "{\n  \"audit\": {\"cluster\": \"c\"},\n  \"policy\": {\n    \"rules\": [\n      {\"tools\": [\"a\"], \"action\": \"allow\"},\n      {\"tools\": [\"b\", \"c\"], \"actio\": 1}\n    ]\n  }\n}";
        assert_eq!(err(pretty).key, "policy.rules[1].actio");
        assert_eq!(
            err(r#"{"audit":{"cluster":"c","headers":{"a\"}":"v"},"timeout_ms":"x"}}"#).key,
            "audit.timeout_ms"
        );
        let e = err("{");
        assert!(
            e.to_string().starts_with("invalid configuration: "),
            "{e:?}"
        );
    }

    #[test]
    fn session_keys() {
        let key = "c2Vzc2lvbi1rZXktZm9yLXRoZS1kZW1vLW9ubHktMzJi"; // 33 bytes
        let c = Config::parse(
            format!(r#"{{"audit":{{"cluster":"c"}},"mcp":{{"session_keys":["{key}"],"reject_session_identity_mismatch":true,"unsealed_sessions":"pass"}}}}"#).as_bytes(),
        )
        .unwrap();
        assert_eq!(c.mcp.session_keys.len(), 1);
        assert_eq!(c.mcp.unsealed_sessions, Unsealed::Pass);
        let d = Config::parse(br#"{"audit":{"cluster":"c"}}"#).unwrap();
        assert!(d.mcp.session_keys.is_empty());
        assert_eq!(d.mcp.unsealed_sessions, Unsealed::Refuse);
        // The owner check promised without keys would hold on one worker only.
        let e = err(r#"{"audit":{"cluster":"c"},"mcp":{"reject_session_identity_mismatch":true}}"#);
        assert_eq!(e.key, "mcp.reject_session_identity_mismatch");
        assert!(e.message.contains("mcp.session_keys"), "{e}");
        let e = err(r#"{"audit":{"cluster":"c"},"mcp":{"session_keys":["c2hvcnQ="]}}"#);
        assert_eq!(e.key, "mcp.session_keys[0]");
        let e = err(r#"{"audit":{"cluster":"c"},"mcp":{"unsealed_sessions":"maybe"}}"#);
        assert_eq!(e.key, "mcp.unsealed_sessions");
    }

    #[test]
    fn auth_and_policy_sections() {
        let c = Config::parse(
            br#"{"audit":{"cluster":"c"},
            "auth":{"mode":"required","forward_identity":true,"providers":[{"name":"corp","issuer":"https://idp.example.com",
              "audiences":["https://mcp.example.com/mcp"],"jwks_uri":"https://idp.example.com/.well-known/jwks.json",
              "jwks_cluster":"idp","claims":{"groups":"realm_access.roles"},"leeway_s":30}],
              "resource_metadata":{"resource":"https://mcp.example.com/mcp","authorization_servers":["https://idp.example.com"]}},
            "policy":{"default":"deny","rules":[{"tools":["delete_*"],"groups":["admins"],"action":"allow"},{"methods":["tools/list"],"action":"allow"}]}}"#,
        )
        .unwrap();
        assert_eq!(c.auth.mode, Mode::Required);
        let p = &c.auth.providers[0];
        let f = p.fetch.as_ref().unwrap();
        assert_eq!(
            (f.cluster.as_str(), f.authority.as_str(), f.path.as_str()),
            ("idp", "idp.example.com", "/.well-known/jwks.json")
        );
        assert_eq!(f.refresh_ms, 600_000);
        assert_eq!(f.refetch_min_ms, 5_000);
        assert_eq!(p.claims.groups, "realm_access.roles");
        assert_eq!(p.algorithms, Alg::ASYMMETRIC.to_vec());
        assert!(c.auth.forward_identity);
        assert_eq!(c.policy.default, Effect::Deny);
        assert_eq!(c.policy.rules.len(), 2);
        assert_eq!(
            split_url("http://127.0.0.1:9400"),
            Some(("http", "127.0.0.1:9400", "/"))
        );
        assert_eq!(split_url("https://u@h/p"), None);
    }

    #[test]
    fn mcp_defaults_hold_without_the_section() {
        let c = Config::parse(br#"{"audit":{"cluster":"c"}}"#).unwrap();
        assert_eq!(c.mcp.max_sessions, DEFAULT_MAX_SESSIONS);
        assert!(c.mcp.decode);
        assert_eq!(c.mcp.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
    }

    #[test]
    fn scope_by_prefix() {
        let m = McpSettings {
            paths: vec!["/mcp".into()],
            max_body_bytes: 1,
            reject_session_identity_mismatch: false,
            max_sessions: 1,
            record_notifications: false,
            decode: true,
            result_preview_bytes: 0,
            session_keys: vec![],
            unsealed_sessions: Unsealed::Refuse,
        };
        assert!(m.in_scope("/mcp"));
        assert!(m.in_scope("/mcp/"));
        assert!(m.in_scope("/mcp?x=1"));
        assert!(m.in_scope("/mcp/sub"));
        assert!(!m.in_scope("/mcpx"));
        assert!(!m.in_scope("/other"));
        let all = McpSettings {
            paths: vec![],
            max_body_bytes: 1,
            reject_session_identity_mismatch: false,
            max_sessions: 1,
            record_notifications: false,
            decode: true,
            result_preview_bytes: 0,
            session_keys: vec![],
            unsealed_sessions: Unsealed::Refuse,
        };
        assert!(all.in_scope("/anything"));
    }
}
