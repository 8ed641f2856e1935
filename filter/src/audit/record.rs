//! The audit record: the public schema, documented field by field in `docs/records.md` and
//! checked by `docs/record.schema.json`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Record schema version.
pub const VERSION: u32 = 1;

/// What a record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    #[serde(rename = "session.start")]
    SessionStart,
    #[serde(rename = "session.end")]
    SessionEnd,
    #[serde(rename = "command")]
    Command,
    #[serde(rename = "notification")]
    Notification,
    #[serde(rename = "auth.denied")]
    AuthDenied,
    #[serde(rename = "policy.denied")]
    PolicyDenied,
    #[serde(rename = "approval.requested")]
    ApprovalRequested,
    /// Written by the approval service (`mcptrail approvals`), not the filter.
    #[serde(rename = "approval.decided")]
    ApprovalDecided,
    #[serde(rename = "decode.error")]
    DecodeError,
    #[serde(rename = "audit.dropped")]
    AuditDropped,
    #[serde(rename = "audit.checkpoint")]
    AuditCheckpoint,
    #[serde(rename = "audit.closed")]
    AuditClosed,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::SessionStart => "session.start",
            Kind::SessionEnd => "session.end",
            Kind::Command => "command",
            Kind::Notification => "notification",
            Kind::AuthDenied => "auth.denied",
            Kind::PolicyDenied => "policy.denied",
            Kind::ApprovalRequested => "approval.requested",
            Kind::ApprovalDecided => "approval.decided",
            Kind::DecodeError => "decode.error",
            Kind::AuditDropped => "audit.dropped",
            Kind::AuditCheckpoint => "audit.checkpoint",
            Kind::AuditClosed => "audit.closed",
        }
    }
}

/// Who made the call (null when auth is off).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    pub sub: Option<String>,
    pub iss: Option<String>,
    pub email: Option<String>,
    pub groups: Vec<String>,
    pub client_id: Option<String>,
}

/// Where the call came from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Source {
    pub address: Option<String>,
}

/// The MCP side of a record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Mcp {
    pub method: Option<String>,
    pub id: Option<Value>,
    pub tool: Option<String>,
    pub arguments: Option<Value>,
    pub protocol_version: Option<String>,
    /// `prompts/get` / `completion/complete` prompt name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// `resources/read` (and friends) URI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// `clientInfo` (`initialize`, or the stateless protocol's per-request `_meta`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<Value>,
    /// The `Mcp-Method` / `Mcp-Name` headers disagree with the body.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub header_mismatch: bool,
    /// The session was started by a different identity.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub session_identity_mismatch: bool,
    /// The session id was presented bare while ids are sealed, and let through
    /// (`mcp.unsealed_sessions: pass`): its owner could not be checked on every VM.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub session_unsealed: bool,
    /// `server_to_client` on messages the server sent (notifications, requests); absent on
    /// what the client sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<String>,
    /// The SSE event id that carried the message (server messages, resumed replies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// The `Last-Event-ID` the client resumed from, when the message came on a resumed stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_event_id: Option<String>,
    /// What the server asked for (`resultType: input_required`): each `inputRequests` key
    /// with the method of its request (`elicitation/create`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_requests: Option<Value>,
    /// The client's `inputResponses` on a retry, masked like arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_responses: Option<Value>,
    /// The task a call created or a `tasks/*` call names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    /// The operation id the next leg will present, where it differs from `operation` (the
    /// answer handed out a newer `requestState`, a task id, or input requests without state):
    /// the trail's reader joins the two, whichever VMs recorded them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_operation: Option<String>,
    /// The task's status as the answer gave it (`working`, `input_required`, and the
    /// terminal `completed`, `failed`, `cancelled`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_status: Option<String>,
}

/// Outcome status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Error,
    Denied,
    UpstreamError,
    Aborted,
    /// 2026-07-28: the server asked the client for input (`resultType: input_required`);
    /// the retry is a record of its own in the same `operation`.
    InputRequired,
    /// The server made the call a task (`resultType: task`); its `tasks/*` records follow
    /// in the same `operation`.
    Task,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Error => "error",
            Status::Denied => "denied",
            Status::UpstreamError => "upstream_error",
            Status::Aborted => "aborted",
            Status::InputRequired => "input_required",
            Status::Task => "task",
        }
    }
}

/// How the call ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub status: Status,
    pub http_status: Option<u32>,
    pub is_error: bool,
    pub error: Option<Value>,
    pub duration_ms: Option<u64>,
    pub response_bytes: Option<u64>,
    /// Server notifications (progress, logging, ...) seen in the answer before it closed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub notifications: u64,
    /// Server-to-client requests (sampling, elicitation, roots) seen in the answer.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub server_requests: u64,
    /// The start of the reply's `result` (compact JSON, masked), when
    /// `mcp.result_preview_bytes` asks for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_preview: Option<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Why records were lost (only on `audit.dropped`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dropped {
    pub count: u64,
    pub reason: DropReason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    BufferFull,
    RetriesExhausted,
}

impl DropReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::BufferFull => "buffer_full",
            DropReason::RetriesExhausted => "retries_exhausted",
        }
    }
}

/// One audit record, without its `chain` (the outbox seals it into a line).
///
/// Field order is the wire order; `chain` is appended last by [`super::chain::Chain::seal`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub v: u32,
    pub kind: Kind,
    pub ts: String,
    pub id: String,
    pub session: Option<String>,
    pub request_id: Option<String>,
    /// One value for every record of one logical operation (`command` records, and the
    /// notifications of a `subscriptions/listen` stream): the legs of a multi-round-trip
    /// request, a task's creating call and its `tasks/*` calls. A call that is an operation
    /// by itself has its own `id` here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    pub identity: Option<Identity>,
    pub source: Option<Source>,
    pub mcp: Option<Mcp>,
    pub outcome: Option<Outcome>,
    pub masked: Vec<String>,
    /// Why the filter refused or could not decode (`auth.denied`, `policy.denied`, `decode.error`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropped: Option<Dropped>,
    /// What is known of a refused token (`auth.denied`): never the token itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthInfo>,
    /// On `session.end`: what this VM saw of the session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_summary: Option<SessionSummary>,
    /// The Envoy route and upstream cluster of the exchange, where Envoy knows them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envoy: Option<EnvoyInfo>,
    /// Which policy rule decided (`policy.denied`): its index, or null for the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyInfo>,
    /// The stream's head at `audit.checkpoint` and `audit.closed`, signed with
    /// `audit.signing_key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<Checkpoint>,
    /// A call under a `review` rule: the approval that let it through (`command`), the
    /// request it is held for (`approval.requested`), or the one denied (`policy.denied`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<Approval>,
}

/// What the approval service said of a call (`filter::approval`), or decided
/// (`approval.decided`, written by the service).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Approval {
    /// The approval request's id at the service.
    pub id: String,
    /// Who approved it (`sub`), on an approved call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
    /// `once` (this call only) or `window` (the caller and tool for a while).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Where approvers decide (`approval.requested`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// `approval.decided`: `approved` or `denied` (the approver is the record's `identity`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<String>,
    /// `approval.decided` of a `window` approval: how long it covers the caller and tool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_s: Option<u64>,
    /// `approval.decided`: the approver's note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// `approval.decided`: who made the call that was decided on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requester: Option<Identity>,
    /// `approval.decided`: the digest of the unmasked arguments the approval is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments_sha256: Option<String>,
    /// `approval.decided`: when the call was first held (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_at: Option<String>,
}

/// A stream's state as of its record `seq`, signed so that a reader without the MAC key can
/// tell the records up to it are the ones the filter wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The last record it covers (the one before this record).
    pub seq: u64,
    /// Lowercase hex SHA-256 of that record's line (64 `0`s when the stream had none).
    pub head: String,
    /// Records the stream produced up to here (sealed, or lost to a full buffer).
    pub emitted: u64,
    /// Records it lost up to here (full buffer, exhausted retries).
    pub dropped: u64,
    /// Base64 Ed25519 signature over `{"stream":S,"seq":N,"head":H,"ts":T}` (compact JSON,
    /// `ts` this record's); absent without a signing key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sig: Option<String>,
}

impl Checkpoint {
    /// The bytes a checkpoint's signature covers.
    pub fn signed_bytes(stream: &str, seq: u64, head: &str, ts: &str) -> Vec<u8> {
        // In this member order (a JSON object built by serde_json would sort its keys).
        let q = |v: &str| serde_json::to_string(v).unwrap_or_default();
        format!(
            "{{\"stream\":{},\"seq\":{seq},\"head\":{},\"ts\":{}}}",
            q(stream),
            q(head),
            q(ts)
        )
        .into_bytes()
    }
}

/// Where Envoy sent the exchange.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvoyInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
}

/// Session facts on `session.end` (as seen by this VM: sessions may span workers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionSummary {
    pub started: Option<String>,
    pub duration_ms: Option<u64>,
    pub commands: u64,
}

/// Token facts on `auth.denied`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthInfo {
    /// Short code: `missing_token`, `expired`, `bad_signature`, `unknown_kid`, ...
    pub error: String,
    pub issuer: Option<String>,
    pub kid: Option<String>,
}

/// Policy facts on `policy.denied`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyInfo {
    pub rule: Option<usize>,
}

impl Record {
    /// A record of `kind` with every optional field empty.
    pub fn new(kind: Kind, ts: String, id: String) -> Self {
        Record {
            v: VERSION,
            kind,
            ts,
            id,
            session: None,
            request_id: None,
            operation: None,
            identity: None,
            source: None,
            mcp: None,
            outcome: None,
            masked: Vec::new(),
            reason: None,
            dropped: None,
            auth: None,
            policy: None,
            session_summary: None,
            envoy: None,
            checkpoint: None,
            approval: None,
        }
    }
}
