//! The filter's RSA arithmetic (`auth::jwt::RsaKey`) against the `rsa` crate it replaced for
//! RS256/384/512: the same verdict on every signature, never a panic.
//!
//! - `Raw`: any modulus, exponent and signature bytes: `public_op` is `None` exactly when the
//!   signature is not the modulus' length or not below it, and otherwise equals
//!   `num-bigint-dig`'s `modpow`; a key is accepted exactly when `rsa::RsaPublicKey::new`
//!   accepts it.
//! - `Token`: a real signature by a test key (2048-bit, e = 65537 or 3), mutated by the input
//!   (bytes xored, cut, extended, replaced), checked over a fuzzed message and hash: our
//!   verdict equals `rsa::pkcs1v15::VerifyingKey`'s, and an unmutated pair always verifies.
#![no_main]

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use mcptrail::auth::jwt::{Alg, RsaKey};
use mcptrail::testkit::jwt::{rsa_key, RSA2_PEM, RSA_PEM};
use rsa::signature::{SignatureEncoding as _, Signer as _, Verifier as _};
use rsa::traits::PublicKeyParts as _;
use rsa::BigUint;
use sha2::{Sha256, Sha384, Sha512};

const E3_PEM: &str = include_str!("../../filter/testdata/rsa-test-key-e3.pem");
const MSG: &[u8] = b"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9";

#[derive(Arbitrary, Debug)]
enum Input {
    Raw {
        n: Vec<u8>,
        e: u64,
        sig: Vec<u8>,
    },
    Token {
        key: u8,
        hash: u8,
        edits: Vec<(u16, u8)>,
        cut: u8,
        grow: Vec<u8>,
        msg: Option<Vec<u8>>,
    },
}

struct Signed {
    key: RsaKey,
    public: rsa::RsaPublicKey,
    /// Signatures of MSG by RS256, RS384, RS512.
    sigs: [Vec<u8>; 3],
}

fn signed() -> &'static [Signed] {
    static KEYS: OnceLock<Vec<Signed>> = OnceLock::new();
    KEYS.get_or_init(|| {
        [RSA_PEM, RSA2_PEM, E3_PEM]
            .iter()
            .map(|pem| {
                let private = rsa_key(pem);
                let public = private.to_public_key();
                let key =
                    RsaKey::new(&public.n().to_bytes_be(), &public.e().to_bytes_be()).unwrap();
                let sigs = [
                    rsa::pkcs1v15::SigningKey::<Sha256>::new(private.clone())
                        .sign(MSG)
                        .to_vec(),
                    rsa::pkcs1v15::SigningKey::<Sha384>::new(private.clone())
                        .sign(MSG)
                        .to_vec(),
                    rsa::pkcs1v15::SigningKey::<Sha512>::new(private)
                        .sign(MSG)
                        .to_vec(),
                ];
                Signed { key, public, sigs }
            })
            .collect()
    })
}

fn verdicts(s: &Signed, hash: u8, msg: &[u8], sig: &[u8]) -> (bool, bool) {
    let k = s.public.clone();
    let reference = rsa::pkcs1v15::Signature::try_from(sig).is_ok_and(|sg| match hash {
        0 => rsa::pkcs1v15::VerifyingKey::<Sha256>::new(k)
            .verify(msg, &sg)
            .is_ok(),
        1 => rsa::pkcs1v15::VerifyingKey::<Sha384>::new(k)
            .verify(msg, &sg)
            .is_ok(),
        _ => rsa::pkcs1v15::VerifyingKey::<Sha512>::new(k)
            .verify(msg, &sg)
            .is_ok(),
    });
    let ours = s.key.verify_rs(
        [Alg::RS256, Alg::RS384, Alg::RS512][usize::from(hash)],
        msg,
        sig,
    );
    (ours, reference)
}

fuzz_target!(|input: Input| {
    match input {
        Input::Raw { n, e, sig } => {
            let reference = rsa::RsaPublicKey::new(BigUint::from_bytes_be(&n), BigUint::from(e));
            let ours = RsaKey::new(&n, &e.to_be_bytes());
            assert_eq!(ours.is_ok(), reference.is_ok(), "key acceptance differs");
            let (Ok(key), Ok(public)) = (ours, reference) else {
                return;
            };
            let got = key.public_op(&sig);
            let s = BigUint::from_bytes_be(&sig);
            if sig.len() != public.size() || &s >= public.n() {
                assert_eq!(got, None);
            } else {
                let want = s.modpow(public.e(), public.n()).to_bytes_be();
                let mut padded = vec![0u8; public.size() - want.len()];
                padded.extend_from_slice(&want);
                assert_eq!(got, Some(padded), "s^e mod n differs");
            }
        }
        Input::Token {
            key,
            hash,
            edits,
            cut,
            grow,
            msg,
        } => {
            let keys = signed();
            let s = &keys[usize::from(key) % keys.len()];
            let hash = hash % 3;
            let mut sig = s.sigs[usize::from(hash)].clone();
            let pristine = edits.is_empty() && cut == 0 && grow.is_empty() && msg.is_none();
            for (at, x) in edits {
                let len = sig.len();
                if let Some(b) = sig.get_mut(usize::from(at) % len.max(1)) {
                    *b ^= x;
                }
            }
            sig.truncate(sig.len().saturating_sub(usize::from(cut)));
            sig.extend_from_slice(&grow);
            let msg = msg.unwrap_or_else(|| MSG.to_vec());
            let (ours, reference) = verdicts(s, hash, &msg, &sig);
            assert_eq!(ours, reference, "verdicts differ");
            if pristine {
                assert!(ours, "a real signature was refused");
            }
        }
    }
});
