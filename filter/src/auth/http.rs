//! The HTTP side of authentication: the bearer token, the MCP challenge, refusals, the
//! protected-resource metadata document (RFC 9728), and the identity headers set upstream.
//! It decides what to answer; the filter layer sends it.

use serde_json::{json, Value};

use crate::audit::build::Refusal;
use crate::audit::record::{AuthInfo, Identity, Kind};
use crate::auth::{AuthSettings, DenyReason, Outcome};

/// Identity headers the filter sets upstream; client-sent copies are always removed.
pub const IDENTITY_HEADERS: [&str; 5] = [
    "x-mcptrail-sub",
    "x-mcptrail-groups",
    "x-mcptrail-email",
    "x-mcptrail-client-id",
    "x-mcptrail-issuer",
];

/// Where RFC 9728 protected-resource metadata is served.
pub const METADATA_PATH: &str = "/.well-known/oauth-protected-resource";

/// The bearer token of an `Authorization` header (scheme case-insensitive).
pub fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim();
    (!token.is_empty()).then_some(token)
}

/// Whether `path` is one the metadata is served at (the root one or a path-suffixed one).
pub fn is_metadata_path(path: &str) -> bool {
    path.strip_prefix(METADATA_PATH)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The `WWW-Authenticate` challenge for a request to `origin` + `path`.
pub fn challenge(origin: &str, path: &str, error: Option<(&str, Option<&str>)>) -> String {
    let mut v = format!("Bearer resource_metadata=\"{origin}{METADATA_PATH}{path}\"");
    if let Some((code, scope)) = error {
        v.push_str(&format!(", error=\"{code}\""));
        if let Some(scope) = scope {
            v.push_str(&format!(", scope=\"{scope}\""));
        }
    }
    v
}

/// A local answer: status, headers, body.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u32,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

/// An auth refusal: what the client is answered and what the record says.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    pub reply: Reply,
    pub refusal: Refusal,
}

/// Refuses for an auth reason (`info.error` is the code); `www` is the challenge, if any.
pub fn refuse(status: u32, info: AuthInfo, detail: String, www: Option<String>) -> Refused {
    let code = if status == 503 {
        "temporarily_unavailable"
    } else {
        info.error.as_str()
    };
    let body = json!({"error": code, "error_description": detail}).to_string();
    let mut headers = vec![
        ("content-type", "application/json".to_string()),
        ("cache-control", "no-store".to_string()),
    ];
    if let Some(www) = www {
        headers.push(("www-authenticate", www));
    }
    if status == 503 {
        headers.push(("retry-after", "1".to_string()));
    }
    Refused {
        reply: Reply {
            status,
            headers,
            body,
        },
        refusal: Refusal {
            kind: Kind::AuthDenied,
            status,
            reason: detail,
            auth: Some(info),
            policy: Vec::new(),
        },
    }
}

/// A request without a bearer token where one is required.
pub fn missing_token(origin: &str, path: &str) -> Refused {
    let info = AuthInfo {
        error: "missing_token".into(),
        issuer: None,
        kid: None,
    };
    refuse(
        401,
        info,
        "no bearer token".into(),
        Some(challenge(origin, path, None)),
    )
}

/// A session presented by another identity than the one that opened it.
pub fn session_mismatch() -> Refused {
    let info = AuthInfo {
        error: "session_identity_mismatch".into(),
        issuer: None,
        kid: None,
    };
    refuse(
        403,
        info,
        "the session was started by another identity".into(),
        None,
    )
}

/// A session id that was not issued through this filter (tampered, sealed under another
/// key, or bare while ids are sealed): answered as the server answers an unknown session, so
/// the client starts a new one.
pub fn session_unknown() -> Refused {
    let info = AuthInfo {
        error: "session_unknown".into(),
        issuer: None,
        kid: None,
    };
    let mut r = refuse(
        404,
        info,
        "the session id was not issued through this gateway, or was altered".into(),
        None,
    );
    r.reply.body =
        json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32001, "message": "Session not found"}})
            .to_string();
    r
}

/// What authentication decided for a request.
#[derive(Debug)]
pub enum Admission {
    /// Let through as this caller; set (or with `None` remove) these request headers.
    Admit {
        identity: Identity,
        headers: Vec<(&'static str, Option<String>)>,
    },
    /// Refused (the identity when the token itself verified).
    Refuse(Box<Refused>, Option<Identity>),
    /// Wait for this provider's keys.
    Wait(usize),
}

/// Maps an authentication outcome for a request to `origin` + `path` onto an admission.
pub fn admit(settings: &AuthSettings, outcome: Outcome, origin: &str, path: &str) -> Admission {
    match outcome {
        Outcome::Wait { provider } => Admission::Wait(provider),
        Outcome::Denied(d) => {
            let status = if d.error == DenyReason::KeysUnavailable {
                503
            } else {
                401
            };
            let info = AuthInfo {
                error: d.error.reason().to_string(),
                issuer: d.issuer,
                kid: d.kid,
            };
            let www =
                (status == 401).then(|| challenge(origin, path, Some(("invalid_token", None))));
            Admission::Refuse(
                Box::new(refuse(status, info, d.error.to_string(), www)),
                None,
            )
        }
        Outcome::Verified(v) => {
            let missing: Vec<&str> = settings
                .required_scopes
                .iter()
                .filter(|s| !v.scopes.contains(s))
                .map(String::as_str)
                .collect();
            if !missing.is_empty() {
                let scope = settings.required_scopes.join(" ");
                let www = challenge(origin, path, Some(("insufficient_scope", Some(&scope))));
                let info = AuthInfo {
                    error: "insufficient_scope".into(),
                    issuer: v.identity.iss.clone(),
                    kid: None,
                };
                let detail = format!("missing scopes: {}", missing.join(" "));
                let refused = refuse(403, info, detail, Some(www));
                return Admission::Refuse(Box::new(refused), Some(v.identity));
            }
            let mut headers = Vec::new();
            if settings.forward_identity {
                let id = &v.identity;
                let groups = id.groups.join(",");
                let values = [
                    id.sub.clone(),
                    Some(groups).filter(|g| !g.is_empty()),
                    id.email.clone(),
                    id.client_id.clone(),
                    id.iss.clone(),
                ];
                for (name, value) in IDENTITY_HEADERS.iter().zip(values) {
                    if value.is_some() {
                        headers.push((*name, value));
                    }
                }
            }
            if !settings.forward_token {
                headers.push(("authorization", None));
            }
            Admission::Admit {
                identity: v.identity,
                headers,
            }
        }
    }
}

/// The protected-resource metadata document for a request to `origin` + `path` (a path
/// under [`METADATA_PATH`]); `default_resource_path` serves the root document.
pub fn metadata_document(
    settings: &AuthSettings,
    path: &str,
    origin: &str,
    default_resource_path: &str,
) -> String {
    let suffix = path.strip_prefix(METADATA_PATH).unwrap_or("");
    let resource_path = if suffix.is_empty() {
        default_resource_path
    } else {
        suffix
    };
    let mut doc = settings.resource_metadata.clone().unwrap_or_default();
    doc.entry("resource")
        .or_insert_with(|| json!(format!("{origin}{resource_path}")));
    doc.entry("authorization_servers").or_insert_with(|| {
        json!(settings
            .providers
            .iter()
            .map(|p| p.issuer.clone())
            .collect::<Vec<_>>())
    });
    doc.entry("bearer_methods_supported")
        .or_insert_with(|| json!(["header"]));
    if !settings.required_scopes.is_empty() {
        doc.entry("scopes_supported")
            .or_insert_with(|| json!(settings.required_scopes));
    }
    Value::Object(doc).to_string()
}

/// Headers of the metadata answer.
pub const METADATA_HEADERS: [(&str, &str); 3] = [
    ("content-type", "application/json"),
    ("cache-control", "max-age=300"),
    ("access-control-allow-origin", "*"),
];
