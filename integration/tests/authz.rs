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
    auth_url, browser, code_for, drive, exchange, json_of, param, pkce, register, register_as,
    register_redirects, token, Outcome,
};
use serde_json::{json, Value};

const APPROVALS_REDIRECT: &str = "http://127.0.0.1:8787/callback";
const APPROVALS_RESOURCE: &str = "http://127.0.0.1:8787";

fn start(spec: &AuthzSpec) -> Authz {
    tokio::task::block_in_place(|| Authz::start_with(spec))
        .unwrap_or_else(|e| panic!("the dev authorization server did not start: {e:#}"))
}

/// Redeems `code` (with its PKCE `verifier`) for `resource` and checks what comes back: a
/// token the filter verifies, alice's, in group eng, issued to `client_id`. The token answer.
#[allow(clippy::too_many_arguments)]
async fn redeemed_by_alice(
    az: &Authz,
    http: &reqwest::Client,
    client_id: &str,
    redirect: &str,
    code: &str,
    verifier: &str,
    resource: &str,
) -> Value {
    let (status, tokens) = exchange(az, http, client_id, redirect, code, verifier, resource).await;
    assert_eq!(status, 200, "{tokens}\n{}", az.log());
    let claims = verified(az, tokens["access_token"].as_str().unwrap(), resource).await;
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["groups"], json!(["eng"]));
    assert_eq!(claims["client_id"], client_id);
    tokens
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
    // A loopback and a web redirect together (VS Code asks so): registered with the loopback
    // one only.
    let (status, client) = register_redirects(
        &az,
        &http,
        &["http://127.0.0.1:33418/", "https://vscode.dev/redirect"],
        "Visual Studio Code",
    )
    .await;
    assert_eq!(status, 201, "{client}");
    assert_eq!(client["redirect_uris"], json!(["http://127.0.0.1:33418/"]));
    assert!(
        az.log().contains("dropped https://vscode.dev/redirect"),
        "{}",
        az.log()
    );
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
    redeemed_by_alice(
        &az,
        &http,
        APPROVALS_CLIENT_ID,
        APPROVALS_REDIRECT,
        &code,
        &verifier,
        APPROVALS_RESOURCE,
    )
    .await;

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

/// A self-signed certificate for `127.0.0.1` (P-256, one day), made with the `openssl` CLI:
/// `(cert.pem, key.pem)` in `dir`.
fn self_signed(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:P-256", "-nodes", "-days", "1"])
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("the openssl CLI runs");
    assert!(out.status.success(), "openssl: {out:?}");
    (cert, key)
}

/// An https server on loopback answering GET `path` with `docs[path]` (JSON, cacheable for a
/// minute) and 404 otherwise; it counts the documents it served.
struct DocServer {
    origin: String,
    served: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for DocServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn doc_server(
    cert: &std::path::Path,
    key: &std::path::Path,
    docs: impl FnOnce(&str) -> Vec<(&'static str, Value)>,
) -> DocServer {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject as _;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let certs = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    // ring (what the workspace already builds rustls with); its missing post-quantum key
    // exchange is no matter for a loopback test server.
    #[allow(deprecated)]
    let provider = rustls::crypto::ring::default_provider();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("https://{}", listener.local_addr().unwrap());
    let docs: Arc<std::collections::HashMap<&str, String>> = Arc::new(
        docs(&origin)
            .into_iter()
            .map(|(p, v)| (p, v.to_string()))
            .collect(),
    );
    let served = Arc::new(AtomicUsize::new(0));
    let task = tokio::spawn({
        let served = served.clone();
        async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, docs, served) = (acceptor.clone(), docs.clone(), served.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut req = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 16 * 1024 {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => req.extend_from_slice(&buf[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&req);
                    let path = head.split(' ').nth(1).unwrap_or("");
                    let reply = match docs.get(path) {
                        Some(body) => {
                            served.fetch_add(1, Ordering::SeqCst);
                            format!(
                                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                                 cache-control: max-age=60\r\ncontent-length: {}\r\n\
                                 connection: close\r\n\r\n{body}",
                                body.len()
                            )
                        }
                        None => "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\
                                 connection: close\r\n\r\n"
                            .to_string(),
                    };
                    let _ = tls.write_all(reply.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        }
    });
    DocServer {
        origin,
        served,
        task,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_id_metadata_document_url_is_a_client() {
    // MCP 2025-11-25: the client's client_id is an https URL; the authorization server
    // fetches the metadata document there. oidc-provider takes https client ids only and
    // refuses special-use addresses, so the document is served over https on loopback with a
    // self-signed certificate the server is told to trust (--cimd-loopback-ca).
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    let redirect = "http://127.0.0.1:45125/callback";
    let docs = doc_server(&cert, &key, |origin| {
        let doc = |path: &str, redirect: &str| {
            json!({
                "client_id": format!("{origin}{path}"),
                "client_name": "Metadata document client",
                "client_uri": "https://client.example/",
                "redirect_uris": [redirect],
                "token_endpoint_auth_method": "none",
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
            })
        };
        vec![
            ("/client.json", doc("/client.json", redirect)),
            (
                "/elsewhere.json",
                doc("/elsewhere.json", "https://client.example/callback"),
            ),
            // A document naming another client id than its URL.
            ("/mismatch.json", doc("/client.json", redirect)),
        ]
    })
    .await;
    let client_id = format!("{}/client.json", docs.origin);

    let az = start(&AuthzSpec {
        cimd_loopback_ca: Some(cert.clone()),
        ..Default::default()
    });
    let http = browser();
    let (_, meta) = json_of(
        http.get(az.url("/.well-known/oauth-authorization-server"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        meta["client_id_metadata_document_supported"], true,
        "{meta}"
    );

    // No registration: the URL is the client id.
    let (verifier, challenge) = pkce();
    let code = code_for(
        &az,
        &http,
        &client_id,
        redirect,
        &challenge,
        MCP_RESOURCE,
        "alice",
    )
    .await;
    let tokens = redeemed_by_alice(
        &az,
        &http,
        &client_id,
        redirect,
        &code,
        &verifier,
        MCP_RESOURCE,
    )
    .await;
    assert!(tokens["refresh_token"].is_string(), "{tokens}");
    assert!(
        docs.served.load(std::sync::atomic::Ordering::SeqCst) >= 1,
        "the document was fetched"
    );

    // Refused, with no redirect to the client (the client is not known): a document with a
    // non-loopback redirect URI (the dev registration rule), one naming another client id,
    // a plain-http client id, and a redirect URI the document does not list.
    let refused = [
        (
            format!("{}/elsewhere.json", docs.origin),
            "https://client.example/callback",
            "invalid_client",
        ),
        (
            format!("{}/mismatch.json", docs.origin),
            redirect,
            "invalid_client",
        ),
        (
            client_id.replace("https://", "http://"),
            redirect,
            "invalid_client",
        ),
        (
            client_id.clone(),
            "http://127.0.0.1:45126/other",
            "invalid_redirect_uri",
        ),
    ];
    for (id, to, error) in refused {
        let (_, challenge) = pkce();
        let url = auth_url(&az, &id, to, &challenge, "S256", MCP_RESOURCE);
        match drive(&http, &url, to, "alice").await {
            Outcome::Page(400, html) => assert!(html.contains(error), "{id}: {html}"),
            other => panic!("{id} with {to} got {other:?}\n{}", az.log()),
        }
    }
    // Its key again (making an RSA key takes a while in a debug build).
    let key_path = dir.path().join("issuer-key.pem");
    std::fs::copy(&az.key_path, &key_path).unwrap();
    drop(az);

    // Without --cimd-loopback-ca a document on loopback is not fetched at all.
    let before = docs.served.load(std::sync::atomic::Ordering::SeqCst);
    let az = start(&AuthzSpec {
        key: Some(key_path),
        ..Default::default()
    });
    let (_, challenge) = pkce();
    let url = auth_url(&az, &client_id, redirect, &challenge, "S256", MCP_RESOURCE);
    match drive(&browser(), &url, redirect, "alice").await {
        Outcome::Page(400, html) => assert!(html.contains("fetch not allowed"), "{html}"),
        other => panic!("a loopback document without the CA got {other:?}"),
    }
    assert_eq!(
        docs.served.load(std::sync::atomic::Ordering::SeqCst),
        before
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_signs_in_for_an_mcp_client_in_a_real_browser() {
    // Debian's headless Chromium driven by playwright-core (integration/browser/
    // signin_page.mjs): the authorization URL a registered loopback client makes (PKCE S256,
    // the MCP resource), the login form, alice signs in, the consent page, Allow, the
    // loopback redirect with a code; the code is exchanged here for alice's token.
    let az = start(&AuthzSpec::default());
    let http = browser();
    let redirect = "http://127.0.0.1:45127/callback";
    let (status, client) = register_as(&az, &http, redirect, "Your MCP client").await;
    assert_eq!(status, 201, "{client}");
    let client_id = client["client_id"].as_str().unwrap().to_string();
    let (verifier, challenge) = pkce();
    let url = auth_url(&az, &client_id, redirect, &challenge, "S256", MCP_RESOURCE);

    let shots = tempfile::tempdir().unwrap();
    let args = json!({
        "url": url, "redirect": redirect, "login": "alice",
        "shots": shots.path(),
    });
    let seen = tokio::task::block_in_place(|| {
        mcptrail_integration::browser::run("signin_page.mjs", &args)
    })
    .unwrap_or_else(|e| panic!("the browser run failed:\n{e}\nauthz log:\n{}", az.log()));
    println!("the pages showed: {seen}");
    let on_issuer = |k: &str| {
        seen[k]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}/interaction/", az.issuer))
    };
    assert!(on_issuer("login_page"), "{seen}");
    assert_eq!(seen["login_heading"], "Sign in");
    assert_eq!(seen["login_has_password"], true);
    assert!(on_issuer("consent_page"), "{seen}");
    assert_eq!(seen["consent_heading"], "Authorize");
    let consent = seen["consent_text"].as_str().unwrap();
    assert!(
        consent.contains("Your MCP client"),
        "the client's name: {consent}"
    );
    assert!(consent.contains("alice"), "{consent}");
    assert!(consent.contains(MCP_RESOURCE), "{consent}");

    let to = reqwest::Url::parse(seen["redirected_to"].as_str().unwrap()).unwrap();
    assert!(to.as_str().starts_with(redirect), "{to}");
    assert_eq!(param(&to, "state").as_deref(), Some("st4te"));
    assert_eq!(param(&to, "iss").as_deref(), Some(az.issuer.as_str()));
    let code = param(&to, "code").expect("a code");
    redeemed_by_alice(
        &az,
        &http,
        &client_id,
        redirect,
        &code,
        &verifier,
        MCP_RESOURCE,
    )
    .await;

    for shot in ["signin-login.png", "signin-consent.png"] {
        let len = std::fs::metadata(shots.path().join(shot)).unwrap().len();
        assert!(len > 5_000, "{shot}: {len} bytes");
        if let Ok(keep) = std::env::var("MCPTRAIL_SCREENSHOTS") {
            std::fs::copy(
                shots.path().join(shot),
                std::path::Path::new(&keep).join(shot),
            )
            .unwrap();
        }
    }
}
