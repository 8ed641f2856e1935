//! A development token issuer: an RS256 key kept in a file, its JWKS served over HTTP, and
//! tokens minted for it. For local stacks and tests only; production uses a real IdP.

use std::path::Path;
use std::sync::{Arc, RwLock};

use anyhow::Context as _;
use axum::routing::get;
use axum::{Json, Router};
use jwt_simple::prelude::*;
use serde_json::{json, Value};
use tokio::net::TcpListener;

/// Loads the key pair from `path`, creating it (RSA 2048) when the file does not exist.
pub fn load_or_create_key(path: &Path) -> anyhow::Result<RS256KeyPair> {
    let pem = match std::fs::read_to_string(path) {
        Ok(pem) => pem,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let kp = RS256KeyPair::generate(2048).map_err(|e| anyhow::anyhow!("keygen: {e}"))?;
            let pem = kp.to_pem().map_err(|e| anyhow::anyhow!("pem: {e}"))?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            write_private(path, &pem)?;
            pem
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let kp = RS256KeyPair::from_pem(&pem).map_err(|e| anyhow::anyhow!("bad key file: {e}"))?;
    let kid = kp.public_key().sha256_thumbprint();
    Ok(kp.with_key_id(&kid))
}

#[cfg(unix)]
fn write_private(path: &Path, data: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data.as_bytes())?;
    Ok(())
}

#[cfg(not(unix))]
fn write_private(path: &Path, data: &str) -> anyhow::Result<()> {
    std::fs::write(path, data)?;
    Ok(())
}

/// The public JWKS for a key pair.
pub fn jwks(kp: &RS256KeyPair) -> Value {
    let c = kp.public_key().to_components();
    let b64 = |b: &[u8]| Base64UrlSafeNoPadding::encode_to_string(b).unwrap_or_default();
    json!({ "keys": [{
        "kty": "RSA",
        "use": "sig",
        "alg": "RS256",
        "kid": kp.key_id().clone().unwrap_or_default(),
        "n": b64(&c.n),
        "e": b64(&c.e),
    }]})
}

/// What goes into a dev token.
#[derive(Debug, Clone)]
pub struct TokenSpec {
    pub issuer: String,
    pub audience: String,
    pub subject: String,
    pub groups: Vec<String>,
    pub email: Option<String>,
    pub client_id: Option<String>,
    pub ttl_s: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Extra {
    groups: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    azp: Option<String>,
}

/// Mints a signed token.
pub fn mint(kp: &RS256KeyPair, spec: &TokenSpec) -> anyhow::Result<String> {
    let claims = Claims::with_custom_claims(
        Extra {
            groups: spec.groups.clone(),
            email: spec.email.clone(),
            azp: spec.client_id.clone(),
        },
        Duration::from_secs(spec.ttl_s),
    )
    .with_issuer(&spec.issuer)
    .with_audience(&spec.audience)
    .with_subject(&spec.subject);
    kp.sign(claims).map_err(|e| anyhow::anyhow!("sign: {e}"))
}

/// Serves `/.well-known/jwks.json` and a minimal OpenID configuration.
pub async fn serve(listener: TcpListener, kp: &RS256KeyPair, issuer: String) -> anyhow::Result<()> {
    serve_jwks(listener, Arc::new(RwLock::new(jwks(kp))), issuer).await
}

/// Like [`serve`], with a key set that can be replaced while serving (key rotation).
pub async fn serve_jwks(
    listener: TcpListener,
    keys: Arc<RwLock<Value>>,
    issuer: String,
) -> anyhow::Result<()> {
    let discovery = json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["token"],
        "subject_types_supported": ["public"],
    });
    let app = Router::new()
        .route(
            "/.well-known/jwks.json",
            get(move || {
                let doc = keys.read().map(|k| k.clone()).unwrap_or(Value::Null);
                async move { Json(doc) }
            }),
        )
        .route(
            "/.well-known/openid-configuration",
            get(move || async move { Json(discovery) }),
        );
    axum::serve(listener, app).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_token_verifies_against_served_jwks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        let kp = load_or_create_key(&path).unwrap();
        let again = load_or_create_key(&path).unwrap();
        assert_eq!(kp.key_id(), again.key_id(), "the key is kept");
        let spec = TokenSpec {
            issuer: "http://127.0.0.1:1".into(),
            audience: "http://127.0.0.1:2/mcp".into(),
            subject: "alice".into(),
            groups: vec!["eng".into()],
            email: None,
            client_id: None,
            ttl_s: 60,
        };
        let token = mint(&kp, &spec).unwrap();
        let set = jwks(&kp);
        let k = &set["keys"][0];
        let n = Base64UrlSafeNoPadding::decode_to_vec(k["n"].as_str().unwrap(), None).unwrap();
        let e = Base64UrlSafeNoPadding::decode_to_vec(k["e"].as_str().unwrap(), None).unwrap();
        let pk = RS256PublicKey::from_components(&n, &e).unwrap();
        let claims = pk.verify_token::<Extra>(&token, None).unwrap();
        assert_eq!(claims.subject.as_deref(), Some("alice"));
        assert_eq!(claims.custom.groups, vec!["eng"]);
    }
}
