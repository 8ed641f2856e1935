//! The digit-led detectors as they were before they walked [`digit_runs`](super::digit_runs):
//! each searched the text for its next digit itself. Kept verbatim as the reference the
//! run-driven walkers are tested against (`run_driven_detectors_find_what_the_byte_walkers_found`).

use super::{
    after_version_word, alnum, at, before, digit, iban_at, ipv4_at, luhn, run, ssn_valid,
    MAX_GROUPS,
};

/// Card numbers: 13-19 digits, optionally in groups separated by one space or dash, the
/// first digit 2-6 (the card networks' ranges), Luhn-valid. Longer digit runs hold no card.
pub(super) fn credit_card(b: &[u8], hit: &mut dyn FnMut(usize, usize)) {
    let mut i = next_digit(b, 0);
    // Filled afresh for each run: only its first `n` entries are read (zeroed once, not per
    // digit run).
    let mut groups = [(0usize, 0usize); MAX_GROUPS];
    while i < b.len() {
        // Collect a run of digit groups.
        let mut n = 0usize;
        let mut j = i;
        loop {
            let len = run(b, j, digit);
            if let Some(g) = groups.get_mut(n) {
                *g = (j, j + len);
                n += 1;
            }
            j += len;
            if matches!(at(b, j), b' ' | b'-') && digit(at(b, j + 1)) && n < MAX_GROUPS {
                j += 1;
            } else {
                break;
            }
        }
        let run_end = j;
        let mut lo = 0usize;
        let mut hi = n;
        if alnum(before(b, i)) {
            lo = 1; // glued to a word on the left
        }
        if alnum(at(b, run_end)) {
            hi = hi.saturating_sub(1); // glued on the right
        }
        let mut a = lo;
        while a < hi {
            let mut total = 0usize;
            let mut best = None;
            for (k, &(gs, ge)) in groups.iter().enumerate().take(hi).skip(a) {
                total += ge - gs;
                if total > 19 {
                    break;
                }
                if total >= 13 {
                    let window = groups.get(a..=k).unwrap_or(&[]);
                    if matches!(at(b, groups.get(a).map_or(0, |g| g.0)), b'2'..=b'6')
                        && luhn(b, window)
                    {
                        best = Some(k);
                    }
                }
            }
            match best {
                Some(k) => {
                    let start = groups.get(a).map_or(0, |g| g.0);
                    let end = groups.get(k).map_or(start, |g| g.1);
                    hit(start, end);
                    a = k + 1;
                }
                None => a += 1,
            }
        }
        i = next_digit(b, run_end.max(i + 1));
    }
}

/// `AAA-GG-SSSS` (or with spaces), area not 000, 666 or 9xx, group not 00, serial not 0000,
/// not part of a longer dash/dot-separated number.
pub(super) fn us_ssn(b: &[u8], hit: &mut dyn FnMut(usize, usize)) {
    let mut i = next_digit(b, 0);
    while i + 11 <= b.len() {
        let len = run(b, i, digit);
        let prev = before(b, i);
        let chained = |c: u8, next: u8| matches!(c, b'-' | b'.' | b'/') && digit(next);
        let prev2 = if i >= 2 { at(b, i - 2) } else { 0 };
        let left_ok = len == 3 && !alnum(prev) && !chained(prev, prev2);
        if left_ok {
            let sep = at(b, i + 3);
            if matches!(sep, b'-' | b' ')
                && run(b, i + 4, digit) == 2
                && at(b, i + 6) == sep
                && run(b, i + 7, digit) == 4
            {
                let end = i + 11;
                let next = at(b, end);
                if !alnum(next) && !chained(next, at(b, end + 1)) && ssn_valid(b, i) {
                    hit(i, end);
                    i = next_digit(b, end);
                    continue;
                }
            }
        }
        i = next_digit(b, i + len.max(1));
    }
}

/// An IBAN: country code, two check digits, the country's exact length, written compact or
/// in groups of four separated by single spaces, one letter case throughout, mod-97 == 1.
pub(super) fn iban(b: &[u8], hit: &mut dyn FnMut(usize, usize)) {
    // A candidate's check digits start a run of digits (the country code is letters): one
    // look per digit run rather than per byte.
    let mut from = 0usize;
    let mut p = next_digit(b, 0);
    while p < b.len() {
        let run_end = p + run(b, p, digit);
        if let Some(i) = p.checked_sub(2) {
            if i >= from
                && i + 15 <= b.len()
                && at(b, i).is_ascii_alphabetic()
                && at(b, i + 1).is_ascii_alphabetic()
                && run_end - p >= 2
                && !alnum(before(b, i))
            {
                if let Some(end) = iban_at(b, i) {
                    hit(i, end);
                    from = end;
                }
            }
        }
        p = next_digit(b, run_end.max(from));
    }
}

/// Dotted quads, each octet 0-255 without leading zeros, not part of a longer dotted
/// number (`1.2.3.4.5`) and not a version (`v1.2.3.4`, `version 1.2.3.4`).
pub(super) fn ipv4(b: &[u8], hit: &mut dyn FnMut(usize, usize)) {
    let mut i = next_digit(b, 0);
    while i + 7 <= b.len() {
        let prev = before(b, i);
        let chained = prev == b'.' && digit(before(b, i.saturating_sub(1)));
        if !alnum(prev) && !chained {
            // The cheap shape test first: most digit runs are not dotted quads.
            if let Some(end) = ipv4_at(b, i).filter(|_| !after_version_word(b, i)) {
                hit(i, end);
                i = next_digit(b, end);
                continue;
            }
        }
        i = next_digit(b, i + run(b, i, digit).max(1));
    }
}

/// The first digit at or after `i` (`b.len()` when none), byte by byte: the walkers
/// searched eight bytes at a time, which `lanes` tests on its own.
pub(super) fn next_digit(b: &[u8], i: usize) -> usize {
    b.get(i..)
        .and_then(|rest| rest.iter().position(u8::is_ascii_digit))
        .map_or(b.len(), |p| i + p)
}
