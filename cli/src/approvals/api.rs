//! HTTP routes: the filter's check, the approvers' API, health.

use std::borrow::Cow;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use mcptrail::audit::record::Identity;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::{ct_eq, is_approver};
use super::grants::{self, Caller, CheckPlan, Decision, Refusal, Status};
use super::store::{Decided, NewRequest, Request, Store};
use super::{new_request_id, notify, now_s, web, Shared};

/// Largest request body accepted.
pub const BODY_MAX: usize = 16 * 1024;

/// An error answered as `{"error": code, "message": text}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub error: Cow<'static, str>,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, error: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            error: Cow::Borrowed(error),
            message: message.into(),
        }
    }

    fn internal(e: anyhow::Error) -> Self {
        eprintln!("approvals: internal error: {e:#}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error (logged)",
        )
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        ApiError::internal(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({ "error": self.error, "message": self.message }));
        if self.status == StatusCode::UNAUTHORIZED {
            let challenge = format!(
                "Bearer error=\"invalid_token\", error_description=\"{}\"",
                self.error
            );
            (self.status, [(header::WWW_AUTHENTICATE, challenge)], body).into_response()
        } else {
            (self.status, body).into_response()
        }
    }
}

type ApiResult = Result<Response, ApiError>;

pub fn router(app: Shared) -> Router {
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/v1/check", post(check))
        .route("/api/me", get(me))
        .route("/api/requests", get(list))
        .route("/api/requests/{id}", get(one))
        .route("/api/requests/{id}/approve", post(approve))
        .route("/api/requests/{id}/deny", post(deny))
        .layer(DefaultBodyLimit::max(BODY_MAX))
        .with_state(app)
}

/// The body, refused with a JSON 413 when too large.
fn body_of(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|r| {
        let status = r.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                status,
                "body_too_large",
                format!("body larger than {BODY_MAX} bytes"),
            )
        } else {
            ApiError::new(status, "bad_body", r.body_text())
        }
    })
}

/// Bodies are JSON; asking for it also keeps cross-site form posts out (CSRF).
fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = ct.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "content-type must be application/json",
        ))
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_json",
            format!("invalid request body: {e}"),
        )
    })
}

/// A query string's parameter (decoded).
pub fn query_param(uri: &Uri, name: &str) -> Option<String> {
    url::form_urlencoded::parse(uri.query()?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

// ---------------------------------------------------------------------------------------
// The filter's check.

#[derive(Deserialize)]
struct CheckBody {
    subject: Value,
    #[serde(default)]
    method: Option<String>,
    /// Null for a call that names no tool (a `review` rule on `methods`): the method is
    /// then what approvals are keyed by.
    #[serde(default)]
    tool: Option<String>,
    #[serde(default)]
    arguments: Value,
    arguments_sha256: String,
    #[serde(default)]
    session: Option<String>,
    #[serde(default)]
    request_id: Option<String>,
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

async fn check(
    State(app): State<Shared>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let key = headers
        .get("x-api-key")
        .map(|v| v.as_bytes())
        .unwrap_or(b"");
    // Every key is compared (no early exit), each in constant time.
    let known = app
        .config
        .api_keys
        .iter()
        .fold(false, |ok, k| ct_eq(k.as_bytes(), key) | ok);
    if !known {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "bad_api_key",
            "missing or unknown x-api-key",
        ));
    }
    require_json(&headers)?;
    let body = body_of(body)?;
    let b: CheckBody = parse_json(&body)?;
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let (Some(sub), iss) = (
        text(&b.subject, "sub"),
        text(&b.subject, "iss").unwrap_or_default(),
    ) else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "no_subject",
            "subject.sub is required: anonymous calls cannot be approved",
        ));
    };
    let target = [b.tool.as_deref(), b.method.as_deref()]
        .into_iter()
        .flatten()
        .find(|t| !t.is_empty())
        .unwrap_or_default()
        .to_string();
    if sub.is_empty() || target.is_empty() || target.len() > 256 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "subject.sub and tool (or, for a call naming no tool, method; at most 256 bytes) must not be empty",
        ));
    }
    if !is_sha256_hex(&b.arguments_sha256) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_digest",
            "arguments_sha256 must be 64 lowercase hex characters",
        ));
    }
    let answer = run_check(&app, &b, &target, &iss, &sub).await?;
    Ok(Json(answer).into_response())
}

fn check_answer(
    app: &Shared,
    decision: &str,
    id: &str,
    approved_by: Option<String>,
    mode: Option<&str>,
    reason: Option<String>,
) -> Value {
    json!({
        "decision": decision,
        "id": id,
        "url": web::request_url(&app.config.public_url, id),
        "approved_by": approved_by,
        "mode": mode,
        "reason": reason,
    })
}

/// Applies the pure plan through the store; a lost race (another check spent the grant,
/// another replica created the request) is planned again from a fresh read.
async fn run_check(
    app: &Shared,
    b: &CheckBody,
    tool: &str,
    iss: &str,
    sub: &str,
) -> Result<Value, ApiError> {
    let limits = app.config.limits();
    let caller = Caller { iss, sub };
    for _ in 0..8 {
        let now = now_s();
        let since = now
            .saturating_sub(limits.grant_ttl_s)
            .saturating_sub(limits.window_s_max);
        let stored = app.store.grants_for(iss, sub, tool, since).await?;
        match grants::plan_check(&stored, &caller, tool, &b.arguments_sha256, now, limits) {
            CheckPlan::Window { id, approved_by } => {
                // Read-only: no write (and no fsync) per call. Each use is in the trail, as a
                // filter `command` record naming this approval.
                return Ok(check_answer(
                    app,
                    "approved",
                    &id,
                    approved_by,
                    Some("window"),
                    None,
                ));
            }
            CheckPlan::ConsumeOnce { id, approved_by } => {
                if app.store.consume_once(&id, now).await? {
                    return Ok(check_answer(
                        app,
                        "approved",
                        &id,
                        approved_by,
                        Some("once"),
                        None,
                    ));
                }
            }
            CheckPlan::Pending { id } => {
                return Ok(check_answer(
                    app,
                    "pending",
                    &id,
                    None,
                    None,
                    Some("waiting for an approver".into()),
                ));
            }
            CheckPlan::Denied {
                id,
                denied_by,
                note,
            } => {
                let reason = grants::denial_reason(denied_by.as_deref(), note.as_deref());
                let mut answer = check_answer(app, "denied", &id, None, None, Some(reason));
                // Who denied, for the filter's record (`approved_by` stays null).
                answer["decided_by"] = json!(denied_by);
                return Ok(answer);
            }
            CheckPlan::Create => {
                app.store
                    .expire_pending(
                        iss,
                        sub,
                        tool,
                        &b.arguments_sha256,
                        now - limits.grant_ttl_s,
                    )
                    .await?;
                let id = new_request_id();
                let created = app
                    .store
                    .insert_pending(&NewRequest {
                        id: &id,
                        iss,
                        sub,
                        tool,
                        method: b.method.as_deref().unwrap_or("tools/call"),
                        arguments_sha256: &b.arguments_sha256,
                        subject: &b.subject,
                        arguments: &b.arguments,
                        session: b.session.as_deref(),
                        request_id: b.request_id.as_deref(),
                        now,
                    })
                    .await?;
                if created {
                    let url = web::request_url(&app.config.public_url, &id);
                    if let Some(n) = &app.config.notify_url {
                        notify::new_request(&app.http, n, sub, tool, &url);
                    }
                    return Ok(check_answer(
                        app,
                        "pending",
                        &id,
                        None,
                        None,
                        Some("waiting for an approver".into()),
                    ));
                }
            }
        }
    }
    Err(ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "contended",
        "the check did not settle; try again",
    ))
}

// ---------------------------------------------------------------------------------------
// Approvers.

/// Who calls the API, and how.
pub struct Who {
    pub identity: Identity,
    pub via_session: bool,
}

/// The caller, from `Authorization: Bearer` or the page's session cookie.
pub async fn who(app: &Shared, headers: &HeaderMap) -> Result<Who, ApiError> {
    let now = now_s();
    if let Some(h) = headers.get(header::AUTHORIZATION) {
        let token = h
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "malformed",
                    "Authorization must be `Bearer <token>`",
                )
            })?;
        let v = app.keys.verify(token, now).await.map_err(|r| ApiError {
            status: StatusCode::UNAUTHORIZED,
            error: Cow::Borrowed(r.reason),
            message: r.message,
        })?;
        return Ok(Who {
            identity: v.identity,
            via_session: false,
        });
    }
    if let Some(identity) = web::session_identity(app, headers, now).await? {
        return Ok(Who {
            identity,
            via_session: true,
        });
    }
    Err(ApiError::new(
        StatusCode::UNAUTHORIZED,
        "missing_token",
        "sign in, or send Authorization: Bearer <token of the issuer>",
    ))
}

/// The caller, who must be in an approver group.
async fn approver(app: &Shared, headers: &HeaderMap) -> Result<Who, ApiError> {
    let w = who(app, headers).await?;
    if !is_approver(&w.identity, &app.config.approver_groups) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "not_an_approver",
            "you are not in an approver group",
        ));
    }
    Ok(w)
}

async fn me(State(app): State<Shared>, headers: HeaderMap) -> ApiResult {
    let w = who(&app, &headers).await?;
    Ok(Json(json!({
        "identity": w.identity,
        "approver": is_approver(&w.identity, &app.config.approver_groups),
        "via": if w.via_session { "session" } else { "bearer" },
        "oidc": app.config.oidc.is_some(),
    }))
    .into_response())
}

fn rfc3339(s: i64) -> String {
    mcptrail::time::rfc3339_ms(u64::try_from(s).unwrap_or(0).saturating_mul(1000))
}

/// A request as the API shows it (arguments exactly as the filter sent them: masked).
pub fn view(app: &Shared, r: &Request, now: i64) -> Value {
    let g = &r.grant;
    let limits = app.config.limits();
    let status = if g.status == Status::Pending && !grants::pending_live(g, now, limits) {
        Status::Expired
    } else {
        g.status
    };
    json!({
        "id": g.id,
        "url": web::request_url(&app.config.public_url, &g.id),
        "status": status.as_str(),
        "caller": r.subject,
        "method": r.method,
        "tool": g.tool,
        "arguments": r.arguments,
        "arguments_sha256": g.arguments_sha256,
        "session": r.session,
        "request_id": r.request_id,
        "created_at": rfc3339(g.created_at),
        "age_s": now.saturating_sub(g.created_at).max(0),
        "expires_at": (g.status == Status::Pending).then(|| rfc3339(g.created_at + limits.grant_ttl_s)),
        "decided_at": g.decided_at.map(rfc3339),
        "decided_by": g.decided_by,
        "approver": r.approver,
        "mode": g.mode.map(|m| m.as_str()),
        "window_s": g.window_s,
        "window_ends_at": g.decided_at.zip(g.window_s).map(|(a, w)| rfc3339(a + w)),
        "note": g.note,
        "consumed_at": g.consumed_at.map(rfc3339),
        "uses": r.uses,
    })
}

async fn list(State(app): State<Shared>, headers: HeaderMap, uri: Uri) -> ApiResult {
    approver(&app, &headers).await?;
    let status = match query_param(&uri, "status").as_deref() {
        None | Some("") | Some("all") => None,
        Some(s) => Some(Status::parse(s).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_status",
                "status must be pending, approved, denied or expired",
            )
        })?),
    };
    let limit = match query_param(&uri, "limit") {
        None => 100,
        Some(l) => l
            .parse::<i64>()
            .ok()
            .filter(|l| (1..=500).contains(l))
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_limit",
                    "limit must be 1..=500",
                )
            })?,
    };
    let now = now_s();
    let limits = app.config.limits();
    let rows = app.store.list(status, limit).await?;
    let items: Vec<Value> = rows
        .iter()
        // Pending means still decidable; an undecided request past grant_ttl_s is expired.
        .filter(|r| status != Some(Status::Pending) || grants::pending_live(&r.grant, now, limits))
        .map(|r| view(&app, r, now))
        .collect();
    Ok(Json(json!({ "requests": items })).into_response())
}

async fn load(app: &Shared, id: &str) -> Result<Request, ApiError> {
    app.store.get(id).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no request {id:?}"),
        )
    })
}

async fn one(State(app): State<Shared>, headers: HeaderMap, Path(id): Path<String>) -> ApiResult {
    approver(&app, &headers).await?;
    let r = load(&app, &id).await?;
    Ok(Json(view(&app, &r, now_s())).into_response())
}

/// `POST /api/requests/{id}/approve` and `/deny`: `{"mode", "window_s", "note"}` (a denial
/// takes a note only).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DecisionBody {
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    window_s: Option<i64>,
    #[serde(default)]
    note: Option<String>,
}

async fn approve(
    State(app): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    decision(&app, &headers, &id, body, true).await
}

async fn deny(
    State(app): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    decision(&app, &headers, &id, body, false).await
}

/// An approver's decision: who, a JSON body that holds one, then [`decide`].
async fn decision(
    app: &Shared,
    headers: &HeaderMap,
    id: &str,
    body: Result<Bytes, BytesRejection>,
    approve: bool,
) -> ApiResult {
    let w = approver(app, headers).await?;
    require_json(headers)?;
    let body = body_of(body)?;
    let b: DecisionBody = parse_json(&body)?;
    let d = grants::validate_decision(
        b.mode.as_deref(),
        b.window_s,
        b.note.as_deref(),
        approve,
        app.config.limits(),
    )
    .map_err(refusal)?;
    decide(app, &w, id, d, b.note.as_deref()).await
}

fn refusal(r: Refusal) -> ApiError {
    let (status, code) = match &r {
        Refusal::OwnRequest => (StatusCode::FORBIDDEN, "own_request"),
        Refusal::NotPending(_) => (StatusCode::CONFLICT, "already_decided"),
        Refusal::Expired => (StatusCode::CONFLICT, "expired"),
        Refusal::NoteTooLong => (StatusCode::BAD_REQUEST, "note_too_long"),
        Refusal::BadWindow(_) => (StatusCode::BAD_REQUEST, "bad_decision"),
    };
    ApiError::new(status, code, r.to_string())
}

async fn decide(app: &Shared, w: &Who, id: &str, d: Decision, note: Option<&str>) -> ApiResult {
    let req = load(app, id).await?;
    let now = now_s();
    let limits = app.config.limits();
    let approver_iss = w.identity.iss.as_deref().unwrap_or_default();
    let approver_sub = w.identity.sub.as_deref().unwrap_or_default();
    let me = Caller {
        iss: approver_iss,
        sub: approver_sub,
    };
    grants::may_decide(&req.grant, &me, now, limits).map_err(refusal)?;
    let (status, mode, window_s) = match d {
        Decision::Approve { mode, window_s } => (Status::Approved, Some(mode), window_s),
        Decision::Deny => (Status::Denied, None, None),
    };
    let approver_json = super::audit::identity_json(&w.identity);
    let decided = Decided {
        id,
        status,
        now,
        decided_by: approver_sub,
        approver: &approver_json,
        mode,
        window_s,
        note,
        expired_before: now - limits.grant_ttl_s,
        approver_iss,
        approver_sub,
    };
    let applied = match &app.audit {
        Some(a) => {
            let record = super::audit::decided_record(
                &req,
                &w.identity,
                status.as_str(),
                mode.map(|m| m.as_str()),
                window_s,
                note,
            );
            a.decide(&decided, record).await?
        }
        None => {
            let mut tx = app.store.begin().await?;
            let ok = Store::decide(&mut tx, &decided).await?;
            tx.commit().await.map_err(anyhow::Error::from)?;
            ok
        }
    };
    if !applied {
        // Decided (or expired) between our read and our conditional update.
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_decided",
            "the request was decided meanwhile",
        ));
    }
    let after = load(app, id).await?;
    Ok(Json(view(app, &after, now_s())).into_response())
}
