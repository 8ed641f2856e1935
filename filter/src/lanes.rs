//! Byte tests eight bytes at a time. The module is built without SIMD128, but wasm32 has
//! 64-bit integers, and byte-at-a-time loops were the main cost of several scanners in V8
//! (the detectors' digit walks, the SSE line ends, the scan of JSON strings). Each test
//! gives, exactly, the high bit of every byte ("lane") of a little-endian word that passes
//! it: a lane's arithmetic never carries into another, so any lane may be read, not only
//! the first, and tests combine with `|`.

const LO: u64 = 0x0101_0101_0101_0101;
pub(crate) const HI: u64 = 0x8080_8080_8080_8080;

/// Lanes equal to `c` (an ASCII byte).
pub(crate) fn eq(x: u64, c: u8) -> u64 {
    let y = x ^ (LO * u64::from(c));
    // A lane is zero iff adding 0x7F to its low 7 bits leaves the high bit clear and its
    // own high bit is clear.
    !(((y & !HI) + !HI) | y) & HI
}

/// Lanes below `n` (at most 0x80).
pub(crate) fn below(x: u64, n: u8) -> u64 {
    // An ASCII lane plus 0x80 - n reaches the high bit iff it is at least n (at most 0xFF:
    // no carry); lanes of 0x80 and above are never below n.
    !(((x & !HI) + LO * u64::from(0x80u8.saturating_sub(n))) | x) & HI
}

/// Lanes that are ASCII digits.
pub(crate) fn digits(x: u64) -> u64 {
    let low7 = x & !HI;
    // High bit set iff low7 <= b'9' (0xB9 - low7 >= 0x80), resp. low7 >= b'0' (+ 0x50).
    let le_nine = LO * (0x7F + u64::from(b'9') + 1) - low7;
    let ge_zero = low7 + LO * (0x7F - (u64::from(b'0') - 1));
    le_nine & ge_zero & !x & HI
}

/// The first position at or after `from` whose byte `lanes` marks, eight bytes at a time
/// (the last few bytes as a word padded with zeros whose lanes do not count).
#[inline(always)]
pub(crate) fn find(b: &[u8], from: usize, lanes: impl Fn(u64) -> u64) -> Option<usize> {
    let mut k = from;
    while let Some(word) = b.get(k..).and_then(<[u8]>::first_chunk::<8>) {
        let m = lanes(u64::from_le_bytes(*word));
        if m != 0 {
            // Little-endian: the lowest marked lane is the first byte in the text.
            return Some(k + (m.trailing_zeros() / 8) as usize);
        }
        k += 8;
    }
    let rest = b.get(k..)?;
    let mut word = [0u8; 8];
    word.get_mut(..rest.len())?.copy_from_slice(rest);
    let valid = (1u64 << (8 * rest.len())) - 1; // fewer than 8 bytes are left
    let m = lanes(u64::from_le_bytes(word)) & valid;
    (m != 0).then(|| k + (m.trailing_zeros() / 8) as usize)
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    /// The lanes a byte-wise predicate marks in `x`.
    fn bytewise(x: u64, p: impl Fn(u8) -> bool) -> u64 {
        x.to_le_bytes()
            .iter()
            .enumerate()
            .fold(0, |m, (lane, &c)| m | (u64::from(p(c)) << (lane * 8 + 7)))
    }

    /// Every test is exact for every byte value in every lane, next to neighbours of every
    /// kind (a true lane must not change its neighbours' answers).
    #[test]
    fn each_test_marks_exactly_its_bytes() {
        let neighbours = [
            0u8, b'0', b'9', b'\n', b'"', 0x1f, 0x20, 0x7f, 0x80, 0xb0, 0xff,
        ];
        for c in 0u8..=255 {
            for &n in &neighbours {
                for lane in 0..8 {
                    let mut bytes = [n; 8];
                    bytes[lane] = c;
                    let x = u64::from_le_bytes(bytes);
                    assert_eq!(digits(x), bytewise(x, |b| b.is_ascii_digit()), "{bytes:?}");
                    for want in [b'\n', b'\r', b'"', b'\\', b'.', 0] {
                        assert_eq!(eq(x, want), bytewise(x, |b| b == want), "{want} {bytes:?}");
                    }
                    for limit in [0u8, 1, 0x20, 0x7f, 0x80] {
                        assert_eq!(below(x, limit), bytewise(x, |b| b < limit), "{bytes:?}");
                    }
                }
            }
        }
    }

    /// `find` stops where a byte-wise search does: every byte value at every position of
    /// texts of every length up to three words, from every start.
    #[test]
    fn find_is_the_byte_wise_search() {
        let is_eol = |x: u64| eq(x, b'\n') | eq(x, b'\r');
        for filler in [b'a', 0x80, 0xff] {
            for len in 0..=24 {
                for at in 0..=len {
                    for c in [b'\n', b'\r', 0, b'a', 0x8a, 0xff] {
                        let mut b = vec![filler; len];
                        if let Some(x) = b.get_mut(at) {
                            *x = c;
                        }
                        for from in 0..=len + 1 {
                            let naive = b
                                .get(from..)
                                .and_then(|r| r.iter().position(|&c| c == b'\n' || c == b'\r'))
                                .map(|p| from + p);
                            assert_eq!(find(&b, from, is_eol), naive, "{b:?} from {from}");
                        }
                    }
                }
            }
        }
    }
}
