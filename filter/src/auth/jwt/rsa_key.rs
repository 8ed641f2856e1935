//! RSA signature verification with the key's Montgomery constants computed once, when the key
//! set is loaded.
//!
//! Why not the `rsa` crate's own verify: its `num-bigint-dig` arithmetic allocates on every
//! step and reduces with a general division setup per call. In V8 that made one RS256 check
//! about 1.2 ms (with `u64_digit`, whose 64x64->128-bit multiplies are a software routine on
//! wasm32) and still about 0.5 ms with 32-bit digits, so a flood of well-formed tokens with a
//! wrong signature was a denial-of-service lever. The public operation `s^e mod n` needs only
//! multiplications modulo `n`: here they are Montgomery products over 27-bit limbs held in
//! u64 words, so a product of two limbs is below 2^54 and up to 1024 of them add up without
//! a carry check (the carries are settled once per row, not once per product). The exponent
//! is public, so the ladder is plain square-and-multiply: 65537 costs 16 squarings and one
//! product.
//!
//! The `rsa` crate stays the authority on what a valid public key is (`RsaPublicKey::new`:
//! odd modulus, at most 4096 bits, exponent bounds) and verifies PSS. PKCS#1 v1.5 is checked
//! the way RFC 8017 section 8.2.2 recommends: encode the expected block and compare it whole,
//! never parse the decrypted one. Every path is tested against the `rsa` crate's own verify
//! over thousands of keys, signatures and forgeries (`tests.rs`, `differential`).

use rsa::traits::PublicKeyParts as _;
use rsa::Pkcs1v15Sign;
use sha2::{Digest as _, Sha256, Sha384, Sha512};

use super::Alg;

/// Bits per limb: 2 * 27 + log2(2 * limbs) < 64 for any modulus up to 13,000 bits.
const W: u32 = 27;
const MASK: u64 = (1 << W) - 1;
/// The most limbs a modulus may have: 2 * 400 products below 2^54 each, plus the carries,
/// stay below 2^64 (4096-bit keys have 153).
const MAX_LIMBS: usize = 400;

/// A validated RSA public key and its Montgomery constants.
#[derive(Clone)]
pub struct RsaKey {
    public: rsa::RsaPublicKey,
    /// The modulus, little-endian 27-bit limbs, with one spare limb (so values below 2n fit).
    n: Vec<u64>,
    /// -n^-1 mod 2^27.
    n_inv: u64,
    /// R^2 mod n, R = 2^(27 * limbs): turns an integer into Montgomery form in one product.
    r2: Vec<u64>,
    /// The public exponent (the `rsa` crate bounds it to 2^33 - 1).
    e: u64,
    /// Bytes of the modulus (a signature's length).
    size: usize,
}

impl RsaKey {
    /// Validates the key (as `rsa::RsaPublicKey::new` does) and computes its constants.
    pub fn new(n: &[u8], e: &[u8]) -> Result<RsaKey, String> {
        let public = rsa::RsaPublicKey::new(
            rsa::BigUint::from_bytes_be(n),
            rsa::BigUint::from_bytes_be(e),
        )
        .map_err(|e| format!("bad RSA key: {e}"))?;
        // Bounded to 2^33 - 1 by the check above, so it fits.
        let e = public
            .e()
            .to_bytes_be()
            .iter()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
        let size = public.size();
        let limbs = (size * 8).div_ceil(W as usize) + 1;
        // Held here too, not only by the `rsa` crate's bounds (4096 bits, 3 <= e odd): the
        // ladder needs an odd e >= 3, and the lazy carries stay below 2^64 only while
        // 2 * limbs * 2^54 does (limbs < 512).
        if e < 3 || e & 1 == 0 || limbs > MAX_LIMBS {
            return Err("bad RSA key: exponent or modulus size out of range".into());
        }
        let n_limbs = limbs_of(&public.n().to_bytes_be(), limbs);
        let r2 = (rsa::BigUint::from(1u8) << (2 * W as usize * limbs)) % public.n();
        let n0 = n_limbs.first().copied().unwrap_or(1);
        // Newton's iteration for n0^-1 mod 2^64: each step doubles the correct low bits, from
        // 3 (n0 * n0 = 1 mod 8 for any odd n0).
        let mut inv = n0;
        for _ in 0..5 {
            inv = inv.wrapping_mul(2u64.wrapping_sub(n0.wrapping_mul(inv)));
        }
        Ok(RsaKey {
            r2: limbs_of(&r2.to_bytes_be(), limbs),
            n: n_limbs,
            n_inv: inv.wrapping_neg() & MASK,
            e,
            size,
            public,
        })
    }

    /// The modulus' length in bits.
    pub fn bits(&self) -> usize {
        self.public.n().bits()
    }

    /// The key as the `rsa` crate holds it (PSS verification, key parts).
    pub fn public(&self) -> &rsa::RsaPublicKey {
        &self.public
    }

    /// `sig^e mod n` as big-endian bytes of the modulus' length, or `None` when `sig` is not
    /// exactly that long or not below `n` (RFC 8017 section 5.2.2: "signature representative
    /// out of range").
    pub fn public_op(&self, sig: &[u8]) -> Option<Vec<u8>> {
        if sig.len() != self.size {
            return None;
        }
        let limbs = self.n.len();
        let s = limbs_of(sig, limbs);
        if !less_than(&s, &self.n) {
            return None;
        }
        let mut t = vec![0u64; 2 * limbs + 1];
        let mut x = vec![0u64; limbs];
        self.mont_mul(&s, &self.r2, &mut x, &mut t);
        let mut acc = x.clone();
        let mut tmp = vec![0u64; limbs];
        let top = 63 - self.e.leading_zeros();
        for bit in (0..top).rev() {
            self.mont_mul(&acc, &acc, &mut tmp, &mut t);
            std::mem::swap(&mut acc, &mut tmp);
            if (self.e >> bit) & 1 == 1 {
                self.mont_mul(&acc, &x, &mut tmp, &mut t);
                std::mem::swap(&mut acc, &mut tmp);
            }
        }
        // Out of Montgomery form: a product with 1, which leaves a value <= n.
        let mut one = vec![0u64; limbs];
        if let Some(o) = one.first_mut() {
            *o = 1;
        }
        self.mont_mul(&acc, &one, &mut tmp, &mut t);
        if !less_than(&tmp, &self.n) {
            sub_assign(&mut tmp, &self.n);
        }
        Some(bytes_of(&tmp, self.size))
    }

    /// RS256, RS384 or RS512 (RSASSA-PKCS1-v1_5 with SHA-2) of `msg`; any other algorithm
    /// is refused. The DigestInfo prefix of each hash comes from the `rsa` crate.
    pub fn verify_rs(&self, alg: Alg, msg: &[u8], sig: &[u8]) -> bool {
        match alg {
            Alg::RS256 => self.verify_pkcs1v15(
                &Pkcs1v15Sign::new::<Sha256>().prefix,
                &Sha256::digest(msg),
                sig,
            ),
            Alg::RS384 => self.verify_pkcs1v15(
                &Pkcs1v15Sign::new::<Sha384>().prefix,
                &Sha384::digest(msg),
                sig,
            ),
            Alg::RS512 => self.verify_pkcs1v15(
                &Pkcs1v15Sign::new::<Sha512>().prefix,
                &Sha512::digest(msg),
                sig,
            ),
            _ => false,
        }
    }

    /// RSASSA-PKCS1-v1_5 verification of `hashed` under the DER `prefix` of its hash's
    /// DigestInfo (private: a caller-chosen prefix, even an empty one, is `verify_rs`'s to
    /// pick).
    fn verify_pkcs1v15(&self, prefix: &[u8], hashed: &[u8], sig: &[u8]) -> bool {
        let Some(em) = self.public_op(sig) else {
            return false;
        };
        // EM = 0x00 || 0x01 || PS (0xff, at least 8) || 0x00 || prefix || hash
        let t_len = prefix.len() + hashed.len();
        let Some(ps_len) = self.size.checked_sub(t_len + 3).filter(|&l| l >= 8) else {
            return false;
        };
        let expected = [0x00, 0x01]
            .iter()
            .chain(std::iter::repeat_n(&0xffu8, ps_len))
            .chain(std::iter::once(&0x00))
            .chain(prefix)
            .chain(hashed);
        em.iter().eq(expected)
    }

    /// The Montgomery product `a * b / R mod n`, for `a`, `b` below 2n with normalised limbs;
    /// the result is below 2n, normalised, in `out`. `t` is scratch of 2 * limbs + 1 words.
    fn mont_mul(&self, a: &[u64], b: &[u64], out: &mut [u64], t: &mut [u64]) {
        let limbs = self.n.len();
        t.fill(0);
        let (Some((&b0, b_rest)), Some((&n0, n_rest))) = (b.split_first(), self.n.split_first())
        else {
            return;
        };
        for (i, &ai) in a.iter().enumerate() {
            // Row i adds ai * b + m * n at t[i..]; m makes the row's lowest limb 0 mod 2^27,
            // so that limb leaves as a carry and the product stays in t[i + 1..].
            let Some((low, rest)) = t
                .get_mut(i..i + limbs + 1)
                .and_then(|r| r.split_first_mut())
            else {
                return;
            };
            let t0 = *low + ai * b0;
            let m = ((t0 & MASK).wrapping_mul(self.n_inv)) & MASK;
            let carry = (t0 + m * n0) >> W;
            for ((tj, bj), nj) in rest.iter_mut().zip(b_rest).zip(n_rest) {
                *tj += ai * bj + m * nj;
            }
            if let Some(next) = rest.first_mut() {
                *next += carry;
            }
        }
        // Settle the carries of the upper half into normalised limbs.
        let mut carry = 0u64;
        for (o, v) in out.iter_mut().zip(t.iter().skip(limbs)) {
            let v = v + carry;
            *o = v & MASK;
            carry = v >> W;
        }
    }
}

/// Little-endian 27-bit limbs of a big-endian integer (`limbs` of them; higher bits dropped,
/// which never happens for inputs no longer than the modulus).
fn limbs_of(be: &[u8], limbs: usize) -> Vec<u64> {
    let mut out = Vec::with_capacity(limbs);
    let (mut acc, mut bits) = (0u64, 0u32);
    for &byte in be.iter().rev() {
        acc |= u64::from(byte) << bits;
        bits += 8;
        if bits >= W {
            out.push(acc & MASK);
            acc >>= W;
            bits -= W;
        }
    }
    out.push(acc);
    out.resize(limbs, 0);
    out
}

/// The big-endian bytes of `x` (normalised limbs), left-padded or cut to `len`.
fn bytes_of(x: &[u64], len: usize) -> Vec<u8> {
    let mut le = Vec::with_capacity(len);
    let (mut acc, mut bits) = (0u64, 0u32);
    for &limb in x {
        if le.len() >= len {
            break;
        }
        acc |= limb << bits;
        bits += W;
        while bits >= 8 && le.len() < len {
            le.push(acc as u8);
            acc >>= 8;
            bits -= 8;
        }
    }
    while le.len() < len {
        le.push(acc as u8);
        acc >>= 8;
    }
    le.reverse();
    le
}

/// `a < b` for normalised limbs of equal count.
fn less_than(a: &[u64], b: &[u64]) -> bool {
    for (x, y) in a.iter().rev().zip(b.iter().rev()) {
        if x != y {
            return x < y;
        }
    }
    false
}

/// `a -= b` for normalised limbs, `a >= b`.
fn sub_assign(a: &mut [u64], b: &[u64]) {
    let mut borrow = 0u64;
    for (x, y) in a.iter_mut().zip(b) {
        let v = (*x | (1 << W)) - y - borrow;
        *x = v & MASK;
        borrow = 1 - (v >> W);
    }
}

#[cfg(test)]
mod tests;
