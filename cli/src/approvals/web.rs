//! The approvers' page and its sign-in: OIDC authorization code flow with PKCE (S256), state
//! and nonce, through the `oauth2` crate. The access token is verified like an API bearer
//! token; the browser gets an opaque, HttpOnly, SameSite=Strict session cookie whose hash
//! maps to the identity in the database (so any replica knows it).

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use mcptrail::audit::chain::sha256_hex;
use mcptrail::audit::record::Identity;
use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
    BasicTokenType,
};
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet, EndpointSet,
    ExtraTokenFields, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope,
    StandardRevocableToken, StandardTokenResponse, TokenResponse as _, TokenUrl,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::api::{query_param, ApiError};
use super::store::Login;
use super::{now_s, random_token, Shared};

const COOKIE: &str = "mcptrail_approvals";
/// How long a sign-in may take between /login and /callback.
const LOGIN_MAX_S: i64 = 600;

/// The page of one request: the URL the MCP client is given.
pub fn request_url(public_url: &str, id: &str) -> String {
    format!("{public_url}/requests/{id}")
}

pub fn router(app: Shared) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/requests/{id}", get(request_page))
        .route("/login", get(login))
        .route("/callback", get(callback))
        .route("/logout", post(logout))
        .with_state(app)
}

fn page(focus: Option<&str>) -> Response {
    // The id is checked to be URL-safe base64 before it gets here: no escaping needed.
    let html = PAGE.replace("{{FOCUS}}", focus.unwrap_or(""));
    (
        [
            (header::CONTENT_SECURITY_POLICY, "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Html(html),
    )
        .into_response()
}

async fn index() -> Response {
    page(None)
}

fn valid_id(id: &str) -> bool {
    id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

async fn request_page(Path(id): Path<String>) -> Response {
    if !valid_id(&id) {
        return (StatusCode::NOT_FOUND, "no such request\n").into_response();
    }
    page(Some(&id))
}

fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// The identity of the page's session, if the request carries a live one.
pub async fn session_identity(
    app: &Shared,
    headers: &HeaderMap,
    now: i64,
) -> Result<Option<Identity>, ApiError> {
    let Some(sid) = cookie_value(headers, COOKIE) else {
        return Ok(None);
    };
    let Some(v) = app
        .store
        .session_get(&sha256_hex(sid.as_bytes()), now)
        .await?
    else {
        return Ok(None);
    };
    Ok(serde_json::from_value(v).ok())
}

/// Creates a session for `identity` until `exp_s`; returns the Set-Cookie value.
pub async fn new_session(app: &Shared, identity: &Identity, exp_s: i64) -> anyhow::Result<String> {
    let sid = random_token(32);
    app.store
        .session_put(
            &sha256_hex(sid.as_bytes()),
            &serde_json::to_value(identity)?,
            exp_s,
        )
        .await?;
    Ok(cookie(app, &sid, exp_s.saturating_sub(now_s()).max(0)))
}

fn cookie(app: &Shared, value: &str, max_age: i64) -> String {
    let secure = if app.config.public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    format!("{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}")
}

// ---------------------------------------------------------------------------------------
// Sign-in.

/// The token response, keeping the ID token (for its nonce).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct IdTokenField {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id_token: Option<String>,
}
impl ExtraTokenFields for IdTokenField {}

type TokenResp = StandardTokenResponse<IdTokenField, BasicTokenType>;
type OidcClient = oauth2::Client<
    BasicErrorResponse,
    TokenResp,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

#[derive(Deserialize)]
struct Discovery {
    authorization_endpoint: String,
    token_endpoint: String,
}

fn fail(status: StatusCode, msg: impl std::fmt::Display) -> Response {
    (status, format!("sign-in failed: {msg}\n")).into_response()
}

async fn client(app: &Shared) -> Result<OidcClient, Response> {
    let Some(oidc) = &app.config.oidc else {
        return Err(fail(
            StatusCode::NOT_FOUND,
            "sign-in is not configured (`oidc`); use the API with a bearer token",
        ));
    };
    let url = oidc.discovery_url(&app.config.issuer);
    let d: Discovery = async {
        app.http
            .get(&url)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await
    }
    .await
    .map_err(|e| fail(StatusCode::BAD_GATEWAY, format!("discovery at {url}: {e}")))?;
    let bad = |e: url::ParseError| fail(StatusCode::BAD_GATEWAY, format!("discovery: {e}"));
    let mut c = oauth2::Client::new(ClientId::new(oidc.client_id.clone()))
        .set_auth_uri(AuthUrl::new(d.authorization_endpoint).map_err(bad)?)
        .set_token_uri(TokenUrl::new(d.token_endpoint).map_err(bad)?)
        .set_redirect_uri(
            RedirectUrl::new(format!("{}/callback", app.config.public_url)).map_err(bad)?,
        );
    if let Some(s) = &oidc.client_secret {
        c = c.set_client_secret(ClientSecret::new(s.clone()));
    }
    Ok(c)
}

/// Only a path on this site (never `//host` or a URL): no open redirect.
fn safe_return(r: Option<String>) -> String {
    match r {
        Some(p) if p.starts_with('/') && !p.starts_with("//") && !p.contains('\\') => p,
        _ => "/".into(),
    }
}

async fn login(State(app): State<Shared>, uri: Uri) -> Response {
    let c = match client(&app).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Some(oidc) = &app.config.oidc else {
        return fail(StatusCode::NOT_FOUND, "sign-in is not configured");
    };
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let nonce = random_token(24);
    let resource = oidc
        .resource
        .clone()
        .unwrap_or_else(|| app.config.public_url.clone());
    let (auth_url, state) = c
        .authorize_url(CsrfToken::new_random)
        .add_scopes(oidc.scopes.iter().cloned().map(Scope::new))
        .set_pkce_challenge(challenge)
        .add_extra_param("nonce", nonce.clone())
        .add_extra_param("resource", resource)
        .url();
    let stored = app
        .store
        .login_put(
            state.secret(),
            &Login {
                verifier: verifier.secret().clone(),
                nonce,
                return_to: safe_return(query_param(&uri, "return")),
                created_at: now_s(),
            },
        )
        .await;
    if let Err(e) = stored {
        eprintln!("approvals: login: {e:#}");
        return fail(StatusCode::INTERNAL_SERVER_ERROR, "internal error (logged)");
    }
    Redirect::to(auth_url.as_str()).into_response()
}

async fn callback(State(app): State<Shared>, uri: Uri) -> Response {
    if let Some(e) = query_param(&uri, "error") {
        return fail(StatusCode::UNAUTHORIZED, format!("the issuer said {e:?}"));
    }
    let (Some(code), Some(state)) = (query_param(&uri, "code"), query_param(&uri, "state")) else {
        return fail(StatusCode::BAD_REQUEST, "code and state are required");
    };
    // Taken (deleted) at once: a state is good for one callback only.
    let login = match app.store.login_take(&state).await {
        Ok(Some(l)) if now_s() - l.created_at <= LOGIN_MAX_S => l,
        Ok(_) => {
            return fail(
                StatusCode::BAD_REQUEST,
                "unknown or expired state; sign in again",
            )
        }
        Err(e) => {
            eprintln!("approvals: callback: {e:#}");
            return fail(StatusCode::INTERNAL_SERVER_ERROR, "internal error (logged)");
        }
    };
    let c = match client(&app).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let token = match c
        .exchange_code(AuthorizationCode::new(code))
        .set_pkce_verifier(PkceCodeVerifier::new(login.verifier))
        .request_async(&app.http)
        .await
    {
        Ok(t) => t,
        Err(e) => return fail(StatusCode::BAD_GATEWAY, format!("token exchange: {e}")),
    };
    let now = now_s();
    // The ACCESS token decides who signs in, verified as the API verifies bearer tokens.
    let v = match app.keys.verify(token.access_token().secret(), now).await {
        Ok(v) => v,
        Err(r) => {
            return fail(
                StatusCode::UNAUTHORIZED,
                format!("access token: {}", r.message),
            )
        }
    };
    // An ID token, when one comes back, must carry our nonce (replayed responses fail). It
    // came straight from the token endpoint, whose TLS vouches for it (OIDC Core 3.1.3.7);
    // identity comes from the verified access token, not from it.
    if let Some(id_token) = &token.extra_fields().id_token {
        let nonce = mcptrail::auth::jwt::parse(id_token, 16 * 1024)
            .ok()
            .and_then(|p| {
                p.claims
                    .get("nonce")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            });
        if nonce.as_deref() != Some(login.nonce.as_str()) {
            return fail(
                StatusCode::UNAUTHORIZED,
                "the ID token's nonce does not match",
            );
        }
    }
    match new_session(&app, &v.identity, v.exp_s).await {
        Ok(set_cookie) => (
            [(header::SET_COOKIE, set_cookie)],
            Redirect::to(&login.return_to),
        )
            .into_response(),
        Err(e) => {
            eprintln!("approvals: session: {e:#}");
            fail(StatusCode::INTERNAL_SERVER_ERROR, "internal error (logged)")
        }
    }
}

async fn logout(State(app): State<Shared>, headers: HeaderMap) -> Response {
    if let Some(sid) = cookie_value(&headers, COOKIE) {
        if let Err(e) = app
            .store
            .session_delete(&sha256_hex(sid.as_bytes()), now_s())
            .await
        {
            eprintln!("approvals: logout: {e:#}");
        }
    }
    (
        [(header::SET_COOKIE, cookie(&app, "", 0))],
        Redirect::to("/"),
    )
        .into_response()
}

const PAGE: &str = include_str!("page.html");
