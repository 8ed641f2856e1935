//! The dev authorization server (`authz/`, oidc-provider) driven over plain HTTP as an MCP
//! client and a browser would: discovery, dynamic registration, sign-in and consent forms,
//! PKCE, resource indicators, token exchange, refresh rotation; its tokens checked with the
//! filter's own JWT functions, its key id with `mcptrail issuer`'s. No skipping: when Node or
//! oidc-provider is missing (`make setup` installs both) these tests fail.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use jwt_simple::prelude::RSAKeyPairLike as _;
use mcptrail::auth::jwt;
use mcptrail_integration::authz::{Authz, AuthzSpec, APPROVALS_CLIENT_ID, MCP_RESOURCE};
use mcptrail_integration::signin::{
    auth_url, browser, code_for, drive, exchange, json_of, param, pkce, register, token, Outcome,
};
use serde_json::{json, Value};

const APPROVALS_REDIRECT: &str = "http://127.0.0.1:8787/callback";
const APPROVALS_RESOURCE: &str = "http://127.0.0.1:8787";

fn start(spec: &AuthzSpec) -> Authz {
    tokio::task::block_in_place(|| Authz::start_with(spec))
        .unwrap_or_else(|e| panic!("the dev authorization server did not start: {e:#}"))
}

/// Verifies `token` with the filter's JWT functions against the served JWKS, for `audience`;
/// its claims.
async fn verified(az: &Authz, token: &str, audience: &str) -> serde_json::Map<String, Value> {
    let jwks = reqwest::get(az.url("/.well-known/jwks.json"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let (keys, skipped) = jwt::parse_jwks(&jwks).unwrap();
    assert!(skipped.is_empty(), "{skipped:?}");
    let parsed = jwt::parse(token, 16 * 1024).unwrap();
    assert_eq!(parsed.alg, jwt::Alg::RS256);
    let key = keys
        .iter()
        .find(|k| k.kid.is_some() && k.kid == parsed.kid)
        .unwrap_or_else(|| panic!("no JWKS key for kid {:?}", parsed.kid));
    jwt::verify_signature(&parsed, &key.key).expect("the signature verifies");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let exp = jwt::check_claims(&parsed.claims, &[audience.to_string()], now, 5)
        .expect("exp/iat/aud hold");
    assert!(exp > now, "not expired");
    parsed.claims
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_documents_describe_an_mcp_authorization_server() {
    let az = start(&AuthzSpec::default());
    let http = browser();
    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    ] {
        let (status, doc) = json_of(http.get(az.url(path)).send().await.unwrap()).await;
        assert_eq!(status, 200, "{path}: {doc}");
        assert_eq!(doc["issuer"], az.issuer, "{path}");
        assert_eq!(doc["authorization_endpoint"], az.url("/auth"));
        assert_eq!(doc["token_endpoint"], az.url("/token"));
        assert_eq!(doc["registration_endpoint"], az.url("/reg"));
        assert_eq!(doc["jwks_uri"], az.url("/.well-known/jwks.json"));
        assert_eq!(doc["code_challenge_methods_supported"], json!(["S256"]));
        assert_eq!(doc["response_types_supported"], json!(["code"]));
        let methods = doc["token_endpoint_auth_methods_supported"].to_string();
        assert!(methods.contains("\"none\""), "public clients: {methods}");
        let grants = doc["grant_types_supported"].to_string();
        assert!(grants.contains("authorization_code") && grants.contains("refresh_token"));
        assert_eq!(doc["authorization_response_iss_parameter_supported"], true);
    }
    let (status, jwks) = json_of(
        http.get(az.url("/.well-known/jwks.json"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "{jwks}");
    assert_eq!(keys[0]["kty"], "RSA");
    assert_eq!(keys[0]["alg"], "RS256");
    assert!(keys[0].get("d").is_none(), "no private part: {jwks}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_is_open_to_loopback_redirect_uris_only() {
    let az = start(&AuthzSpec::default());
    let http = browser();
    for ok in [
        "http://127.0.0.1:33418/callback",
        "http://localhost:6274/oauth/callback",
        "http://[::1]:8080/cb",
    ] {
        let (status, client) = register(&az, &http, ok).await;
        assert_eq!(status, 201, "{ok}: {client}");
        assert!(client["client_id"].as_str().is_some_and(|c| !c.is_empty()));
        assert_eq!(client["token_endpoint_auth_method"], "none");
        assert_eq!(client["redirect_uris"], json!([ok]));
    }
    for bad in [
        "https://evil.example/cb",
        "http://evil.example/cb",
        "http://127.0.0.1.evil.example/cb",
    ] {
        let (status, err) = register(&az, &http, bad).await;
        assert_eq!(status, 400, "{bad}: {err}");
        assert_eq!(err["error"], "invalid_redirect_uri", "{bad}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_consent_pkce_and_a_jwt_for_the_resource() {
    let az = start(&AuthzSpec::default());
    let http = browser();
    let redirect = "http://127.0.0.1:45123/callback";
    let (status, client) = register(&az, &http, redirect).await;
    assert_eq!(status, 201, "{client}");
    let client_id = client["client_id"].as_str().unwrap().to_string();

    // A wrong verifier is refused.
    let (_verifier, challenge) = pkce();
    let code = code_for(
        &az,
        &http,
        &client_id,
        redirect,
        &challenge,
        MCP_RESOURCE,
        "bob",
    )
    .await;
    let (other, _) = pkce();
    let (status, err) = exchange(
        &az,
        &http,
        &client_id,
        redirect,
        &code,
        &other,
        MCP_RESOURCE,
    )
    .await;
    assert_eq!(
        (status, err["error"].as_str()),
        (400, Some("invalid_grant")),
        "{err}"
    );

    // Signed in and consented already (this browser session): straight back with a code.
    let (verifier, challenge) = pkce();
    let url = auth_url(&az, &client_id, redirect, &challenge, "S256", MCP_RESOURCE);
    let Outcome::Redirect(to) = drive(&http, &url, redirect, "nobody").await else {
        panic!("the second authorization asked again:\n{}", az.log());
    };
    let code = param(&to, "code").unwrap();
    let (status, tokens) = exchange(
        &az,
        &http,
        &client_id,
        redirect,
        &code,
        &verifier,
        MCP_RESOURCE,
    )
    .await;
    assert_eq!(status, 200, "{tokens}\n{}", az.log());
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 600, "access tokens live 10 minutes");

    let at = tokens["access_token"].as_str().unwrap();
    let header = at.split('.').next().unwrap();
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["typ"], "at+jwt", "{header}");
    let claims = verified(&az, at, MCP_RESOURCE).await;
    assert_eq!(claims["iss"], az.issuer);
    assert_eq!(claims["aud"], MCP_RESOURCE);
    assert_eq!(claims["sub"], "bob");
    assert_eq!(claims["email"], "bob@example.com");
    assert_eq!(claims["groups"], json!(["admins"]));
    assert_eq!(claims["client_id"], client_id.as_str());
    let ttl = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert_eq!(ttl, 600);

    let id = verified(&az, tokens["id_token"].as_str().unwrap(), &client_id).await;
    assert_eq!(id["iss"], az.issuer);
    assert_eq!(id["sub"], "bob");
    assert_eq!(id["email"], "bob@example.com");
    assert_eq!(id["groups"], json!(["admins"]));

    // Refresh: a new access token and a new refresh token; the used one is refused.
    let rt1 = tokens["refresh_token"]
        .as_str()
        .expect("a refresh token")
        .to_string();
    let refresh = |rt: String| {
        let (az, http, client_id) = (&az, &http, client_id.clone());
        async move {
            token(
                az,
                http,
                &[
                    ("grant_type", "refresh_token"),
                    ("client_id", &client_id),
                    ("refresh_token", &rt),
                    ("resource", MCP_RESOURCE),
                ],
            )
            .await
        }
    };
    let (status, fresh) = refresh(rt1.clone()).await;
    assert_eq!(status, 200, "{fresh}\n{}", az.log());
    let rt2 = fresh["refresh_token"]
        .as_str()
        .expect("rotated")
        .to_string();
    assert_ne!(rt2, rt1, "the refresh token rotates");
    let at2 = fresh["access_token"].as_str().unwrap();
    assert_ne!(at2, at);
    let claims = verified(&az, at2, MCP_RESOURCE).await;
    assert_eq!(claims["sub"], "bob");
    assert_eq!(claims["groups"], json!(["admins"]));
    let (status, err) = refresh(rt1).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (400, Some("invalid_grant")),
        "{err}"
    );
    // Reusing a rotated refresh token revokes the grant: its successor goes too.
    let (status, err) = refresh(rt2).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (400, Some("invalid_grant")),
        "{err}"
    );

    // The code is single use (a replay also revokes what it gave: so it comes last here).
    let (status, err) = exchange(
        &az,
        &http,
        &client_id,
        redirect,
        &code,
        &verifier,
        MCP_RESOURCE,
    )
    .await;
    assert_eq!(
        (status, err["error"].as_str()),
        (400, Some("invalid_grant")),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_or_missing_pkce_and_unknown_logins_are_refused() {
    let az = start(&AuthzSpec::default());
    let http = browser();
    let redirect = "http://localhost:45124/cb";
    let (_, client) = register(&az, &http, redirect).await;
    let client_id = client["client_id"].as_str().unwrap().to_string();

    let (verifier, _) = pkce();
    // code_challenge_method=plain: the error goes back to the (registered) client.
    let url = auth_url(&az, &client_id, redirect, &verifier, "plain", MCP_RESOURCE);
    let Outcome::Redirect(to) = drive(&http, &url, redirect, "bob").await else {
        panic!("plain PKCE was not answered with an error redirect");
    };
    assert_eq!(
        param(&to, "error").as_deref(),
        Some("invalid_request"),
        "{to}"
    );
    assert!(param(&to, "code").is_none(), "{to}");

    // No PKCE at all.
    let mut url = reqwest::Url::parse(&az.url("/auth")).unwrap();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &client_id)
        .append_pair("redirect_uri", redirect)
        .append_pair("scope", "openid")
        .append_pair("resource", MCP_RESOURCE);
    let Outcome::Redirect(to) = drive(&http, url.as_str(), redirect, "bob").await else {
        panic!("a request without PKCE was not answered with an error redirect");
    };
    assert_eq!(
        param(&to, "error").as_deref(),
        Some("invalid_request"),
        "{to}"
    );

    // An unknown login: the form again, with 401, and no session.
    let (_, challenge) = pkce();
    let url = auth_url(&az, &client_id, redirect, &challenge, "S256", MCP_RESOURCE);
    match drive(&http, &url, redirect, "mallory").await {
        Outcome::Page(401, html) => {
            assert!(html.contains("Unknown login"), "{html}");
            assert!(
                html.contains("name=\"password\""),
                "the form is shown again"
            );
        }
        other => panic!("an unknown login got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_approvals_client_is_preregistered_and_resources_can_be_listed() {
    let az = start(&AuthzSpec {
        resources: Some(format!("{MCP_RESOURCE},{APPROVALS_RESOURCE}")),
        ..Default::default()
    });
    let http = browser();
    let (verifier, challenge) = pkce();
    let code = code_for(
        &az,
        &http,
        APPROVALS_CLIENT_ID,
        APPROVALS_REDIRECT,
        &challenge,
        APPROVALS_RESOURCE,
        "alice",
    )
    .await;
    let (status, tokens) = exchange(
        &az,
        &http,
        APPROVALS_CLIENT_ID,
        APPROVALS_REDIRECT,
        &code,
        &verifier,
        APPROVALS_RESOURCE,
    )
    .await;
    assert_eq!(status, 200, "{tokens}");
    let claims = verified(
        &az,
        tokens["access_token"].as_str().unwrap(),
        APPROVALS_RESOURCE,
    )
    .await;
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["groups"], json!(["eng"]));
    assert_eq!(claims["client_id"], APPROVALS_CLIENT_ID);

    // A resource not in the list.
    let (_, challenge) = pkce();
    let url = auth_url(
        &az,
        APPROVALS_CLIENT_ID,
        APPROVALS_REDIRECT,
        &challenge,
        "S256",
        "http://127.0.0.1:9999/other",
    );
    let Outcome::Redirect(to) = drive(&http, &url, APPROVALS_REDIRECT, "alice").await else {
        panic!("an unlisted resource was not answered with an error redirect");
    };
    assert_eq!(
        param(&to, "error").as_deref(),
        Some("invalid_target"),
        "{to}"
    );

    // A redirect URI the client does not have: no redirect at all.
    let url = auth_url(
        &az,
        APPROVALS_CLIENT_ID,
        "http://127.0.0.1:8788/callback",
        &challenge,
        "S256",
        APPROVALS_RESOURCE,
    );
    match drive(&http, &url, "http://127.0.0.1:8788/callback", "alice").await {
        Outcome::Page(400, html) => assert!(html.contains("redirect_uri"), "{html}"),
        other => panic!("an unregistered redirect URI got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_id_is_mcptrail_issuers_and_its_tokens_verify() {
    // The key made by `mcptrail issuer` (load_or_create_key), as `make run` keeps it.
    let az = start(&AuthzSpec::default());
    let kp = mcptrail_cli::issuer::load_or_create_key(&az.key_path).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cli_url = format!("http://{}", listener.local_addr().unwrap());
    let served = tokio::spawn({
        let kp = kp.clone();
        let iss = cli_url.clone();
        async move { mcptrail_cli::issuer::serve(listener, &kp, iss).await }
    });
    let get = |url: String| async move {
        reqwest::get(url)
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    };
    let ours = get(az.url("/.well-known/jwks.json")).await;
    let theirs = get(format!("{cli_url}/.well-known/jwks.json")).await;
    served.abort();
    for field in ["kid", "n", "e", "kty", "alg", "use"] {
        assert_eq!(ours["keys"][0][field], theirs["keys"][0][field], "{field}");
    }

    // A token from `mcptrail token` (same key, same issuer URL) verifies against this JWKS.
    let minted = mcptrail_cli::issuer::mint(
        &kp,
        &mcptrail_cli::issuer::TokenSpec {
            issuer: az.issuer.clone(),
            audience: MCP_RESOURCE.into(),
            subject: "sam".into(),
            groups: vec!["support".into()],
            email: Some("sam@example.com".into()),
            client_id: None,
            ttl_s: 60,
        },
    )
    .unwrap();
    let claims = verified(&az, &minted, MCP_RESOURCE).await;
    assert_eq!(claims["iss"], az.issuer);
    drop(az);

    // A key the server creates (no file yet) is one `mcptrail token` reads, same kid.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new-key.pem");
    let az = start(&AuthzSpec {
        key: Some(path.clone()),
        ..Default::default()
    });
    let kp = mcptrail_cli::issuer::load_or_create_key(&path).unwrap();
    let ours = get(az.url("/.well-known/jwks.json")).await;
    assert_eq!(
        ours["keys"][0]["kid"],
        json!(kp.key_id().clone().unwrap_or_default())
    );
}
