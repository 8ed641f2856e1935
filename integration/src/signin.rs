//! Sign-in at the dev authorization server driven over plain HTTP the way an MCP client and
//! a browser would: dynamic registration, the sign-in and consent forms, PKCE, the code and
//! token exchanges. Shared by `tests/authz.rs` (the server itself) and `tests/oauth_clients.rs`
//! (tokens the stock clients would not ask for, such as one for another resource). Test
//! helpers: they panic on transport errors.

use base64::Engine as _;
use reqwest::header::LOCATION;
use reqwest::redirect::Policy;
use serde_json::{json, Value};
use sha2::Digest as _;

use crate::authz::Authz;

/// A browser-like client: cookies kept, redirects not followed (the tests follow them, and
/// stop before the loopback client's redirect URI).
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(Policy::none())
        .build()
        .unwrap()
}

/// `(verifier, S256 challenge)`.
pub fn pkce() -> (String, String) {
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).unwrap();
    let b64 = &base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let verifier = b64.encode(raw);
    let challenge = b64.encode(sha2::Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

pub async fn json_of(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or_else(|_| json!({ "raw": text }));
    (status, v)
}

/// Registers a public client (RFC 7591) with `redirect`; the answer.
pub async fn register(az: &Authz, http: &reqwest::Client, redirect: &str) -> (u16, Value) {
    register_as(az, http, redirect, "authz test").await
}

/// [`register`] with a client name.
pub async fn register_as(
    az: &Authz,
    http: &reqwest::Client,
    redirect: &str,
    name: &str,
) -> (u16, Value) {
    register_redirects(az, http, &[redirect], name).await
}

/// Registers a public client named `name` with every redirect URI of `redirects`.
pub async fn register_redirects(
    az: &Authz,
    http: &reqwest::Client,
    redirects: &[&str],
    name: &str,
) -> (u16, Value) {
    let r = http
        .post(az.url("/reg"))
        .json(&json!({
            "client_name": name,
            "redirect_uris": redirects,
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
        }))
        .send()
        .await
        .unwrap();
    json_of(r).await
}

/// What an authorization request came to.
#[derive(Debug)]
pub enum Outcome {
    /// The redirect to the client (not followed): its URL.
    Redirect(reqwest::Url),
    /// A page the browser stopped at: status and HTML.
    Page(u16, String),
}

/// The `action` of the page's form whose body contains `marker`.
pub fn form_action(html: &str, marker: &str) -> Option<String> {
    html.split("<form").skip(1).find_map(|f| {
        let form = f.split("</form>").next()?;
        if !form.contains(marker) {
            return None;
        }
        let a = form.split("action=\"").nth(1)?;
        Some(a.split('"').next()?.replace("&amp;", "&"))
    })
}

/// Follows redirects from `url` like a browser, answering the sign-in form with `login` and
/// the consent form with Allow, until the redirect to `redirect_uri` (returned, not
/// followed) or a page it cannot answer.
pub async fn drive(http: &reqwest::Client, url: &str, redirect_uri: &str, login: &str) -> Outcome {
    let mut url = reqwest::Url::parse(url).unwrap();
    let mut answered_login = false;
    for _ in 0..20 {
        let r = http.get(url.clone()).send().await.unwrap();
        let status = r.status().as_u16();
        if r.status().is_redirection() {
            let loc = r.headers()[LOCATION].to_str().unwrap().to_string();
            let next = url.join(&loc).unwrap();
            if next.as_str().starts_with(redirect_uri) {
                return Outcome::Redirect(next);
            }
            url = next;
            continue;
        }
        let html = r.text().await.unwrap();
        if status != 200 {
            return Outcome::Page(status, html);
        }
        let (action, form): (String, Vec<(&str, &str)>) =
            if let Some(a) = form_action(&html, "name=\"password\"") {
                assert!(!answered_login, "the sign-in form came back:\n{html}");
                assert!(html.contains("name=\"login\""), "{html}");
                assert!(html.contains("type=\"submit\""), "{html}");
                answered_login = true;
                (a, vec![("login", login), ("password", "x")])
            } else if let Some(a) = form_action(&html, ">Allow<") {
                (a, vec![("decision", "allow")])
            } else {
                return Outcome::Page(status, html);
            };
        let r = http
            .post(url.join(&action).unwrap())
            .form(&form)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        if !r.status().is_redirection() {
            return Outcome::Page(status, r.text().await.unwrap());
        }
        let loc = r.headers()[LOCATION].to_str().unwrap().to_string();
        url = url.join(&loc).unwrap();
        if url.as_str().starts_with(redirect_uri) {
            return Outcome::Redirect(url);
        }
    }
    panic!("too many redirects from {url}");
}

/// An authorization request (code, PKCE with `method`, `resource`).
pub fn auth_url(
    az: &Authz,
    client_id: &str,
    redirect: &str,
    challenge: &str,
    method: &str,
    resource: &str,
) -> String {
    let mut u = reqwest::Url::parse(&az.url("/auth")).unwrap();
    u.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", redirect)
        .append_pair("scope", "openid")
        .append_pair("state", "st4te")
        .append_pair("code_challenge", challenge)
        .append_pair("code_challenge_method", method)
        .append_pair("resource", resource);
    u.to_string()
}

pub fn param(url: &reqwest::Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Signs `login` in for `client_id` (consenting) and returns the authorization code.
pub async fn code_for(
    az: &Authz,
    http: &reqwest::Client,
    client_id: &str,
    redirect: &str,
    challenge: &str,
    resource: &str,
    login: &str,
) -> String {
    let url = auth_url(az, client_id, redirect, challenge, "S256", resource);
    match drive(http, &url, redirect, login).await {
        Outcome::Redirect(to) => {
            assert_eq!(param(&to, "state").as_deref(), Some("st4te"), "{to}");
            assert_eq!(
                param(&to, "iss").as_deref(),
                Some(az.issuer.as_str()),
                "RFC 9207"
            );
            param(&to, "code").unwrap_or_else(|| panic!("no code in {to}\n{}", az.log()))
        }
        Outcome::Page(s, html) => panic!("stopped at a {s} page:\n{html}\n{}", az.log()),
    }
}

pub async fn token(az: &Authz, http: &reqwest::Client, form: &[(&str, &str)]) -> (u16, Value) {
    let r = http.post(az.url("/token")).form(form).send().await.unwrap();
    json_of(r).await
}

pub async fn exchange(
    az: &Authz,
    http: &reqwest::Client,
    client_id: &str,
    redirect: &str,
    code: &str,
    verifier: &str,
    resource: &str,
) -> (u16, Value) {
    token(
        az,
        http,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", client_id),
            ("redirect_uri", redirect),
            ("code", code),
            ("code_verifier", verifier),
            ("resource", resource),
        ],
    )
    .await
}
