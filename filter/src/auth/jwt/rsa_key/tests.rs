//! The differential tests of `RsaKey` against the `rsa` crate (the implementation it replaces
//! for RS256/384/512): the raw operation against `num-bigint-dig`'s `modpow` over random
//! moduli of many sizes and exponents, and whole verifications against
//! `rsa::pkcs1v15::VerifyingKey` over thousands of valid signatures, their mutations and
//! crafted encodings. These tests are built without optimisation, so an overflow of the lazy
//! carries would panic here; they also run compiled to wasm (`make test-wasm`).
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::{Alg, RsaKey};
use crate::testkit::jwt::{rsa_key, RSA2_PEM, RSA_PEM};
use rsa::signature::{SignatureEncoding as _, Signer as _, Verifier as _};
use rsa::traits::{PrivateKeyParts as _, PublicKeyParts as _};
use rsa::{BigUint, Pkcs1v15Sign};
use sha2::{Digest as _, Sha256, Sha384, Sha512};

const RSA3072_PEM: &str = include_str!("../../../../testdata/rsa-test-key-3072.pem");
const RSA4096_PEM: &str = include_str!("../../../../testdata/rsa-test-key-4096.pem");
const RSA_E3_PEM: &str = include_str!("../../../../testdata/rsa-test-key-e3.pem");

/// SplitMix64: a seeded generator, so a failure replays.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Big-endian `x`, left-padded to `len`.
fn padded(x: &BigUint, len: usize) -> Vec<u8> {
    let b = x.to_bytes_be();
    let mut out = vec![0u8; len.saturating_sub(b.len())];
    out.extend_from_slice(&b);
    out
}

#[test]
fn the_raw_operation_equals_modpow_over_random_moduli_and_exponents() {
    let mut rng = Rng(21);
    let mut checked = 0;
    for bits in [
        2048usize, 2049, 2055, 2100, 2500, 3071, 3072, 4000, 4095, 4096,
    ] {
        let len = bits.div_ceil(8);
        for e in [3u64, 17, 65537, (rng.next() % (1 << 33)) | 1] {
            // A random odd modulus of exactly `bits` bits (the operation needs no primes).
            let mut n = rng.bytes(len);
            let top = bits - 8 * (len - 1);
            n[0] &= ((1u16 << top) - 1) as u8;
            n[0] |= 1 << (top - 1);
            n[len - 1] |= 1;
            let key = RsaKey::new(&n, &e.to_be_bytes()).unwrap();
            let nb = BigUint::from_bytes_be(&n);
            let one = BigUint::from(1u8);
            let mut sigs: Vec<BigUint> = vec![
                BigUint::from(0u8),
                one.clone(),
                BigUint::from(2u8),
                &nb - &one,
                &nb - BigUint::from(2u8),
                &nb >> 1,
            ];
            for _ in 0..12 {
                sigs.push(BigUint::from_bytes_be(&rng.bytes(len)) % &nb);
            }
            for s in sigs {
                let want = padded(&s.modpow(&BigUint::from(e), &nb), len);
                assert_eq!(
                    key.public_op(&padded(&s, len)),
                    Some(want),
                    "{bits} bits, e {e}"
                );
                checked += 1;
            }
            // Out of range: n itself, anything above, and the wrong length.
            assert_eq!(key.public_op(&n), None);
            assert_eq!(key.public_op(&vec![0xff; len]), None);
            assert_eq!(key.public_op(&vec![0; len - 1]), None);
            assert_eq!(key.public_op(&vec![0; len + 1]), None);
        }
    }
    assert_eq!(checked, 720);
}

/// The rsa crate's verdict on `sig` over `msg` with `hash`.
fn reference(key: &rsa::RsaPublicKey, hash: &str, msg: &[u8], sig: &[u8]) -> bool {
    let Ok(s) = rsa::pkcs1v15::Signature::try_from(sig) else {
        return false;
    };
    let k = key.clone();
    match hash {
        "RS256" => rsa::pkcs1v15::VerifyingKey::<Sha256>::new(k).verify(msg, &s),
        "RS384" => rsa::pkcs1v15::VerifyingKey::<Sha384>::new(k).verify(msg, &s),
        _ => rsa::pkcs1v15::VerifyingKey::<Sha512>::new(k).verify(msg, &s),
    }
    .is_ok()
}

/// RsaKey's verdict, as `verify_signature` asks it.
fn ours(key: &RsaKey, hash: &str, msg: &[u8], sig: &[u8]) -> bool {
    key.verify_rs(Alg::parse(hash).unwrap(), msg, sig)
}

fn sign(pem: &str, hash: &str, msg: &[u8]) -> Vec<u8> {
    let k = rsa_key(pem);
    match hash {
        "RS256" => rsa::pkcs1v15::SigningKey::<Sha256>::new(k)
            .sign(msg)
            .to_vec(),
        "RS384" => rsa::pkcs1v15::SigningKey::<Sha384>::new(k)
            .sign(msg)
            .to_vec(),
        _ => rsa::pkcs1v15::SigningKey::<Sha512>::new(k)
            .sign(msg)
            .to_vec(),
    }
}

fn key_of(pem: &str) -> (RsaKey, rsa::RsaPublicKey) {
    let public = rsa_key(pem).to_public_key();
    let key = RsaKey::new(&public.n().to_bytes_be(), &public.e().to_bytes_be()).unwrap();
    (key, public)
}

#[test]
fn verification_agrees_with_the_rsa_crate_on_valid_and_mutated_signatures() {
    let mut rng = Rng(7);
    let keys = [RSA_PEM, RSA2_PEM, RSA3072_PEM, RSA4096_PEM, RSA_E3_PEM];
    let (other, _) = key_of(RSA2_PEM);
    let (mut valid, mut invalid) = (0, 0);
    for pem in keys {
        let (key, public) = key_of(pem);
        let n = public.n().to_bytes_be();
        for hash in ["RS256", "RS384", "RS512"] {
            for i in 0..8 {
                let msg = format!("eyJhbGciOiJ{hash}.{i}.{}", rng.next()).into_bytes();
                let sig = sign(pem, hash, &msg);
                assert!(ours(&key, hash, &msg, &sig), "{hash} valid");
                assert!(reference(&public, hash, &msg, &sig));
                valid += 1;
                let mut cases: Vec<(Vec<u8>, Vec<u8>, &str)> = Vec::new();
                for _ in 0..8 {
                    let mut s = sig.clone();
                    let at = rng.below(s.len());
                    s[at] ^= 1 << rng.below(8);
                    cases.push((msg.clone(), s, hash));
                }
                let mut m = msg.clone();
                let at = rng.below(m.len());
                m[at] ^= 0x20;
                cases.push((m, sig.clone(), hash));
                for h in ["RS256", "RS384", "RS512"]
                    .into_iter()
                    .filter(|h| *h != hash)
                {
                    cases.push((msg.clone(), sig.clone(), h));
                }
                cases.push((msg.clone(), sig[1..].to_vec(), hash));
                cases.push((msg.clone(), [&[0u8][..], &sig].concat(), hash));
                cases.push((msg.clone(), n.clone(), hash));
                cases.push((msg.clone(), vec![0; sig.len()], hash));
                cases.push((msg.clone(), vec![0xff; sig.len()], hash));
                cases.push((msg.clone(), Vec::new(), hash));
                for (m, s, h) in &cases {
                    let want = reference(&public, h, m, s);
                    assert!(!want, "a mutation the reference accepts");
                    assert_eq!(ours(&key, h, m, s), want, "{h} mutated");
                    invalid += 1;
                }
                // Another key never verifies it.
                assert!(!ours(&other, hash, &msg, &sig) || pem == RSA2_PEM);
            }
        }
    }
    assert_eq!((valid, invalid), (120, 2040));
}

#[test]
fn crafted_encodings_are_refused_as_the_rsa_crate_refuses_them() {
    let private = rsa_key(RSA_PEM);
    let (key, public) = key_of(RSA_PEM);
    let k = public.size();
    let msg = b"header.payload";
    let hash = Sha256::digest(msg);
    let prefix = Pkcs1v15Sign::new::<Sha256>().prefix.to_vec();
    let prefix384 = Pkcs1v15Sign::new::<Sha384>().prefix.to_vec();
    // EM = 00 01 PS(ff..) 00 T, built with its parts varied.
    let em = |start: &[u8], ps_len: usize, sep: u8, t: &[u8], tail: &[u8]| -> Vec<u8> {
        let mut v = start.to_vec();
        v.extend(std::iter::repeat_n(0xffu8, ps_len));
        v.push(sep);
        v.extend_from_slice(t);
        v.extend_from_slice(tail);
        v
    };
    let t = [&prefix[..], &hash[..]].concat();
    let ps = k - 3 - t.len();
    let garbage = [0x5au8; 20];
    let mut wrong_hash = t.clone();
    *wrong_hash.last_mut().unwrap() ^= 1;
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        ("the correct encoding", em(&[0, 1], ps, 0, &t, &[]), true),
        ("block type 2", em(&[0, 2], ps, 0, &t, &[]), false),
        ("no separator", em(&[0, 1], ps, 0xff, &t, &[]), false),
        (
            "garbage after the hash (Bleichenbacher 2006)",
            em(&[0, 1], ps - garbage.len(), 0, &t, &garbage),
            false,
        ),
        (
            "a SHA-384 prefix over the SHA-256 hash",
            em(
                &[0, 1],
                k - 3 - prefix384.len() - hash.len(),
                0,
                &[&prefix384[..], &hash[..]].concat(),
                &[],
            ),
            false,
        ),
        (
            "no DigestInfo",
            em(&[0, 1], k - 3 - hash.len(), 0, &hash, &[]),
            false,
        ),
        ("another hash", em(&[0, 1], ps, 0, &wrong_hash, &[]), false),
        (
            "a zero inside the padding",
            {
                let mut v = em(&[0, 1], ps, 0, &t, &[]);
                v[10] = 0;
                v
            },
            false,
        ),
    ];
    for (what, em, want) in cases {
        assert_eq!(em.len(), k, "{what}");
        // "Sign" the block with the private exponent.
        let m = BigUint::from_bytes_be(&em);
        let sig = padded(&m.modpow(private.d(), public.n()), k);
        assert_eq!(key.public_op(&sig), Some(em.clone()), "{what}");
        assert_eq!(
            reference(&public, "RS256", msg, &sig),
            want,
            "{what}: reference"
        );
        assert_eq!(ours(&key, "RS256", msg, &sig), want, "{what}");
    }
}

#[test]
fn keys_the_rsa_crate_refuses_are_refused() {
    let n = padded(&(BigUint::from(1u8) << 2047), 256);
    // Even modulus, even exponent, exponent too large, exponent 1, modulus over 4096 bits.
    let mut odd = n.clone();
    odd[255] |= 1;
    assert!(RsaKey::new(&n, &[1, 0, 1]).is_err());
    assert!(RsaKey::new(&odd, &[1, 0, 0]).is_err());
    assert!(RsaKey::new(&odd, &[4, 0, 0, 0, 1]).is_err());
    assert!(RsaKey::new(&odd, &[1]).is_err());
    let mut big = vec![0xffu8; 513];
    big[0] = 1;
    assert!(RsaKey::new(&big, &[1, 0, 1]).is_err());
    assert!(RsaKey::new(&odd, &[1, 0, 1]).is_ok());
}

/// Small and non-squarefree moduli (from a review): every `s` below each odd `n` up to 301,
/// where `s^e = 0 mod n` for some `s != 0` (n = 9, 25, 27, ...), so the last product can be `n`
/// itself and the final subtraction runs; the worst case for the lazy carries (an all-ones
/// 4096-bit modulus, e = 2^33 - 1); a modulus p^2 with s = p; leading zero bytes in `n`.
#[test]
fn small_degenerate_and_extreme_moduli() {
    let mut zero_results = 0;
    for n in (5u64..=301).step_by(2) {
        let nb = BigUint::from(n);
        let n_bytes = nb.to_bytes_be();
        for e in [3u64, 5, 17, 65537, (1 << 33) - 1] {
            let Ok(key) = RsaKey::new(&n_bytes, &e.to_be_bytes()) else {
                continue;
            };
            for s in 0..n {
                let sb = BigUint::from(s);
                let want = sb.modpow(&BigUint::from(e), &nb);
                if s != 0 && want == BigUint::from(0u8) {
                    zero_results += 1;
                }
                assert_eq!(
                    key.public_op(&padded(&sb, n_bytes.len())),
                    Some(padded(&want, n_bytes.len())),
                    "n {n} e {e} s {s}"
                );
            }
        }
    }
    assert!(zero_results > 100, "{zero_results}");
    let ones = vec![0xffu8; 512];
    let nb = BigUint::from_bytes_be(&ones);
    for e in [3u64, 65537, (1 << 33) - 1] {
        let key = RsaKey::new(&ones, &e.to_be_bytes()).unwrap();
        for s in [&nb - 1u8, &nb - 2u8, &nb >> 1, BigUint::from(1u8) << 4095] {
            let want = padded(&s.modpow(&BigUint::from(e), &nb), 512);
            assert_eq!(key.public_op(&padded(&s, 512)), Some(want), "e {e}");
        }
    }
    let mut p = vec![0xffu8; 128];
    p[127] = 0xfd;
    let pb = BigUint::from_bytes_be(&p);
    let key = RsaKey::new(&(&pb * &pb).to_bytes_be(), &[1, 0, 1]).unwrap();
    assert_eq!(key.public_op(&padded(&pb, 256)), Some(vec![0; 256]));
    let (plain, public) = key_of(RSA_PEM);
    let zeros = [&[0u8, 0][..], &public.n().to_bytes_be()].concat();
    let padded_key = RsaKey::new(&zeros, &public.e().to_bytes_be()).unwrap();
    let sig = sign(RSA_PEM, "RS256", b"a.b");
    assert!(ours(&plain, "RS256", b"a.b", &sig) && ours(&padded_key, "RS256", b"a.b", &sig));
    assert!(!ours(
        &padded_key,
        "RS256",
        b"a.b",
        &[&[0u8][..], &sig].concat()
    ));
}

/// Crafted blocks under the e = 3 key and with SHA-384/512 (from a review): the structure
/// checks do not depend on the exponent or the hash.
#[test]
fn crafted_blocks_under_e3_and_other_hashes() {
    let private = rsa_key(RSA_E3_PEM);
    let (key, public) = key_of(RSA_E3_PEM);
    let k = public.size();
    let msg = b"header.payload";
    for (alg, prefix, hash) in [
        (
            "RS384",
            Pkcs1v15Sign::new::<Sha384>().prefix.to_vec(),
            Sha384::digest(msg).to_vec(),
        ),
        (
            "RS512",
            Pkcs1v15Sign::new::<Sha512>().prefix.to_vec(),
            Sha512::digest(msg).to_vec(),
        ),
    ] {
        let t = [&prefix[..], &hash[..]].concat();
        let block = |first: u8, garbage: usize| {
            let mut v = vec![first, 1];
            v.extend(std::iter::repeat_n(0xffu8, k - 3 - t.len() - garbage));
            v.push(0);
            v.extend_from_slice(&t);
            v.extend(std::iter::repeat_n(0x5au8, garbage));
            v
        };
        // Without the NULL parameters in the DigestInfo (both refuse it).
        let mut no_null = prefix.clone();
        if let Some(i) = no_null.windows(2).position(|w| w == [0x05, 0x00]) {
            no_null.drain(i..i + 2);
            no_null[1] -= 2;
            no_null[3] -= 2;
        }
        let mut short = vec![0u8, 1];
        short.extend(std::iter::repeat_n(
            0xffu8,
            k - 3 - no_null.len() - hash.len(),
        ));
        short.push(0);
        short.extend_from_slice(&no_null);
        short.extend_from_slice(&hash);
        for (what, em, want) in [
            ("correct", block(0, 0), true),
            ("first byte 1", block(1, 0), false),
            ("garbage after the hash", block(0, 16), false),
            ("no NULL parameters", short, false),
        ] {
            let m = BigUint::from_bytes_be(&em);
            assert!(&m < public.n(), "{alg} {what}: the block must be signable");
            let sig = padded(&m.modpow(private.d(), public.n()), k);
            assert_eq!(
                reference(&public, alg, msg, &sig),
                want,
                "{alg} {what}: reference"
            );
            assert_eq!(ours(&key, alg, msg, &sig), want, "{alg} {what}");
        }
    }
}
