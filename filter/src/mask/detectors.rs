//! Built-in value detectors.
//!
//! Each detector is a hand-written linear scanner over the string's bytes, anchored on a
//! rare byte found with `memchr` (`@`, `+`, the `J` of `eyJ`, the `_` of `ghp_`, ...) and
//! validated where a checksum exists (Luhn for cards, mod-97 for IBANs). No regex; the one
//! allocation is the list of digit runs the digit-led detectors share ([`digit_runs`]),
//! reused for every string of a masking pass. A detector reports byte ranges through a
//! callback. Every range starts and ends on an ASCII byte, so it always falls on `char`
//! boundaries.
//!
//! Before any detector runs, [`Features::of`] makes one pass over the string noting which
//! anchor bytes occur and how many digits and dots it has; [`Detector::applies`] then skips
//! every detector that cannot match, so most strings are scanned once and only once.
//!
//! Boundaries: a match must not be glued to letters or digits on either side
//! (`xAKIA...`, `4111...1111abc` are not matches), which is what keeps order ids,
//! version numbers and hashes from being flagged.

use crate::lanes;

/// A built-in detector (configuration name in [`Detector::name`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detector {
    Email,
    CreditCard,
    UsSsn,
    Iban,
    Phone,
    Ipv4,
    Jwt,
    BearerToken,
    AwsAccessKey,
    GcpApiKey,
    GithubToken,
    SlackToken,
    PrivateKey,
}

impl Detector {
    /// Every detector, in documentation order.
    pub const ALL: [Detector; 13] = [
        Detector::Email,
        Detector::CreditCard,
        Detector::UsSsn,
        Detector::Iban,
        Detector::Phone,
        Detector::Ipv4,
        Detector::Jwt,
        Detector::BearerToken,
        Detector::AwsAccessKey,
        Detector::GcpApiKey,
        Detector::GithubToken,
        Detector::SlackToken,
        Detector::PrivateKey,
    ];

    /// The configuration name (`masking.detectors`).
    pub fn name(self) -> &'static str {
        match self {
            Detector::Email => "email",
            Detector::CreditCard => "credit_card",
            Detector::UsSsn => "us_ssn",
            Detector::Iban => "iban",
            Detector::Phone => "phone",
            Detector::Ipv4 => "ipv4",
            Detector::Jwt => "jwt",
            Detector::BearerToken => "bearer_token",
            Detector::AwsAccessKey => "aws_access_key",
            Detector::GcpApiKey => "gcp_api_key",
            Detector::GithubToken => "github_token",
            Detector::SlackToken => "slack_token",
            Detector::PrivateKey => "private_key",
        }
    }

    /// The detector a configuration name denotes.
    pub fn from_name(name: &str) -> Option<Detector> {
        Detector::ALL.into_iter().find(|d| d.name() == name)
    }

    /// Shortest string this detector can match: shorter strings are not scanned.
    pub(crate) fn min_len(self) -> usize {
        match self {
            Detector::Email => 6,
            Detector::CreditCard => 13,
            Detector::UsSsn => 11,
            Detector::Iban => 15,
            Detector::Phone => 9,
            Detector::Ipv4 => 7,
            Detector::Jwt => 14,
            Detector::BearerToken => 15,
            Detector::AwsAccessKey => 20,
            Detector::GcpApiKey => 39,
            Detector::GithubToken => 33,
            Detector::SlackToken => 15,
            Detector::PrivateKey => 27,
        }
    }

    /// Calls `hit(start, end)` for each match in `s`, in order, without overlaps.
    pub(crate) fn find(self, s: &str, hit: &mut dyn FnMut(usize, usize)) {
        let mut runs = Vec::new();
        if self.walks_digit_runs() {
            digit_runs(s.as_bytes(), &mut runs);
        }
        self.find_with(s, &runs, hit);
    }

    /// Whether the detector walks the digit runs of a string (and takes them from
    /// [`digit_runs`], computed once for all of them).
    pub(crate) fn walks_digit_runs(self) -> bool {
        matches!(
            self,
            Detector::CreditCard | Detector::UsSsn | Detector::Iban | Detector::Ipv4
        )
    }

    /// [`Detector::find`] with `runs`, the [`digit_runs`] of `s` (read only by the
    /// detectors that [walk them](Detector::walks_digit_runs)).
    pub(crate) fn find_with(
        self,
        s: &str,
        runs: &[(usize, usize)],
        hit: &mut dyn FnMut(usize, usize),
    ) {
        let b = s.as_bytes();
        match self {
            Detector::Email => email(b, hit),
            Detector::CreditCard => credit_card(b, runs, hit),
            Detector::UsSsn => us_ssn(b, runs, hit),
            Detector::Iban => iban(b, runs, hit),
            Detector::Phone => phone(b, hit),
            Detector::Ipv4 => ipv4(b, runs, hit),
            Detector::Jwt => jwt(b, hit),
            Detector::BearerToken => bearer(b, hit),
            Detector::AwsAccessKey => aws_access_key(b, hit),
            Detector::GcpApiKey => gcp_api_key(b, hit),
            Detector::GithubToken => github_token(b, hit),
            Detector::SlackToken => slack_token(b, hit),
            Detector::PrivateKey => private_key(s, hit),
        }
    }
}

/// What one pass over a string found: the anchor bytes present and the digit and dot
/// counts that detectors need.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Features {
    anchors: u16,
    digits: u32,
    dots: u32,
    len: usize,
}

const F_AT: u16 = 1;
const F_PLUS: u16 = 1 << 1;
const F_J: u16 = 1 << 2;
const F_A: u16 = 1 << 3;
const F_Z: u16 = 1 << 4;
const F_UNDERSCORE: u16 = 1 << 5;
const F_X: u16 = 1 << 6;
const F_DASH: u16 = 1 << 7;
const F_B: u16 = 1 << 8;
const F_SPACE: u16 = 1 << 9;
const F_ALPHA: u16 = 1 << 10;
const F_DIGIT: u16 = 1 << 11;
const F_DOT: u16 = 1 << 12;

/// Byte class table for [`Features::of`] (built at compile time: an index out of range
/// would fail the build, not the filter).
#[allow(clippy::indexing_slicing)]
static CLASS: [u16; 256] = {
    let mut t = [0u16; 256];
    let mut c = 0usize;
    while c < 256 {
        let b = c as u8;
        let mut k = 0u16;
        if b.is_ascii_alphabetic() {
            k |= F_ALPHA;
        }
        if b.is_ascii_digit() {
            k |= F_DIGIT;
        }
        k |= match b {
            b'@' => F_AT,
            b'+' => F_PLUS,
            b'J' => F_J,
            b'A' => F_A,
            b'z' => F_Z,
            b'_' => F_UNDERSCORE,
            b'x' => F_X,
            b'-' => F_DASH,
            b'b' | b'B' => F_B,
            b' ' | b'\t' => F_SPACE,
            b'.' => F_DOT,
            _ => 0,
        };
        t[c] = k;
        c += 1;
    }
    t
};

impl Features {
    /// One pass over `s`: digits and dots are counted eight bytes at a time, the anchors
    /// taken from the class table byte by byte (a third of the work of counting there too).
    pub(crate) fn of(s: &str) -> Features {
        let mut f = Features {
            len: s.len(),
            ..Features::default()
        };
        let b = s.as_bytes();
        let words = b.chunks_exact(8);
        let tail = words.remainder();
        let mut anchors = 0u16;
        for word in words.filter_map(<[u8]>::first_chunk::<8>) {
            let x = u64::from_le_bytes(*word);
            f.digits += lanes::digits(x).count_ones();
            f.dots += lanes::eq(x, b'.').count_ones();
            for &c in word {
                anchors |= CLASS.get(usize::from(c)).copied().unwrap_or(0);
            }
        }
        for &c in tail {
            let k = CLASS.get(usize::from(c)).copied().unwrap_or(0);
            anchors |= k;
            f.digits += u32::from(k & F_DIGIT != 0);
            f.dots += u32::from(k & F_DOT != 0);
        }
        f.anchors = anchors;
        f
    }

    /// [`Features::of`] byte by byte, as it was: the reference its word-wise counting is
    /// tested against.
    #[cfg(test)]
    pub(crate) fn of_bytewise(s: &str) -> Features {
        let mut f = Features {
            len: s.len(),
            ..Features::default()
        };
        for &c in s.as_bytes() {
            let k = CLASS.get(usize::from(c)).copied().unwrap_or(0);
            f.anchors |= k;
            f.digits += u32::from(k & F_DIGIT != 0);
            f.dots += u32::from(k & F_DOT != 0);
        }
        f
    }

    fn has(&self, bits: u16) -> bool {
        self.anchors & bits == bits
    }
}

impl Detector {
    /// Whether a string with these features can hold a match at all.
    pub(crate) fn applies(self, f: &Features) -> bool {
        if f.len < self.min_len() {
            return false;
        }
        match self {
            Detector::Email => f.has(F_AT) && f.dots >= 1,
            Detector::CreditCard => f.digits >= 13,
            Detector::UsSsn => f.digits >= 9 && f.anchors & (F_DASH | F_SPACE) != 0,
            // Check digits plus a mostly numeric account: every registry format has 10+.
            Detector::Iban => f.digits >= 8 && f.has(F_ALPHA),
            Detector::Phone => f.has(F_PLUS) && f.digits >= 8,
            Detector::Ipv4 => f.dots >= 3 && f.digits >= 4,
            Detector::Jwt => f.has(F_J) && f.dots >= 2,
            Detector::BearerToken => f.has(F_B | F_SPACE),
            Detector::AwsAccessKey => f.has(F_A),
            Detector::GcpApiKey => f.has(F_A | F_Z),
            Detector::GithubToken => f.has(F_UNDERSCORE),
            Detector::SlackToken => f.has(F_X | F_DASH),
            Detector::PrivateKey => f.has(F_DASH),
        }
    }
}

// ---- byte helpers: out-of-range reads give 0, which is a boundary --------------------

fn at(b: &[u8], i: usize) -> u8 {
    b.get(i).copied().unwrap_or(0)
}

/// The byte before `i` (0 at the start).
fn before(b: &[u8], i: usize) -> u8 {
    match i.checked_sub(1) {
        Some(j) => at(b, j),
        None => 0,
    }
}

fn alnum(c: u8) -> bool {
    c.is_ascii_alphanumeric()
}

fn digit(c: u8) -> bool {
    c.is_ascii_digit()
}

/// base64url alphabet (JWT segments, GCP keys).
fn b64url(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'-' || c == b'_'
}

/// The maximal runs of ASCII digits of `b`, as `(start, end)`, in order, into `out`. Found
/// once per string for the four digit-led detectors, which then walk the list: most runs
/// are refused by their length or the byte after them, without reading the text between
/// runs. Each detector searching the text for its next digit itself was most of their cost
/// on a 64 KB tool result in V8.
pub(crate) fn digit_runs(b: &[u8], out: &mut Vec<(usize, usize)>) {
    out.clear();
    let mut open: Option<usize> = None;
    let words = b.chunks_exact(8);
    let tail = words.remainder();
    let mut k = 0usize;
    for word in words.filter_map(<[u8]>::first_chunk::<8>) {
        let m = lanes::digits(u64::from_le_bytes(*word));
        // Each lane's high bit moved to the next lane: "the byte before is a digit" (the
        // first lane's from the previous word).
        let prev = (m << 8) | if open.is_some() { 0x80 } else { 0 };
        let starts = m & !prev;
        let mut events = starts | (!m & prev & lanes::HI);
        while events != 0 {
            let at = k + (events.trailing_zeros() / 8) as usize;
            if starts & events & events.wrapping_neg() != 0 {
                open = Some(at);
            } else if let Some(s) = open.take() {
                out.push((s, at));
            }
            events &= events - 1;
        }
        k += 8;
    }
    for &c in tail {
        match (c.is_ascii_digit(), open) {
            (true, None) => open = Some(k),
            (false, Some(s)) => {
                out.push((s, k));
                open = None;
            }
            _ => {}
        }
        k += 1;
    }
    if let Some(s) = open {
        out.push((s, b.len()));
    }
}

/// Length of the run of bytes satisfying `f` starting at `i`.
fn run(b: &[u8], i: usize, f: impl Fn(u8) -> bool) -> usize {
    b.get(i..)
        .map_or(0, |rest| rest.iter().take_while(|&&c| f(c)).count())
}

/// Offsets of `lit` in `b`: `memchr` on its first byte, then a comparison (smaller than a
/// substring searcher, and literals here are short).
pub(crate) fn literal_iter<'a>(b: &'a [u8], lit: &'a [u8]) -> impl Iterator<Item = usize> + 'a {
    let first = lit.first().copied().unwrap_or(0);
    memchr::memchr_iter(first, b).filter(move |&i| b.get(i..i + lit.len()) == Some(lit))
}

// ---- email ------------------------------------------------------------------------------

/// Local-part bytes: ASCII `[A-Za-z0-9._%+-]` and any non-ASCII byte (internationalised
/// addresses, `josé@example.com`).
fn email_local(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'%' | b'+' | b'-') || c >= 0x80
}

/// File extensions that look like top-level domains in `icon@2x.png`.
const NOT_TLDS: [&str; 9] = [
    "png", "jpg", "jpeg", "gif", "svg", "webp", "ico", "bmp", "pdf",
];

fn email(b: &[u8], hit: &mut dyn FnMut(usize, usize)) {
    let mut from = 0usize;
    for at_pos in memchr::memchr_iter(b'@', b) {
        if at_pos < from {
            continue;
        }
        // Local part: the whole run to the left, starting on a character, no leading dot. A
        // run longer than an address's 64 bytes is masked whole rather than missed, and not
        // cut either: what a cut left behind could read as an address of its own.
        let mut start = at_pos;
        while start > from && email_local(before(b, start)) {
            start -= 1;
        }
        while start < at_pos && (at(b, start) == b'.' || (0x80..0xC0).contains(&at(b, start))) {
            start += 1;
        }
        if start == at_pos {
            continue;
        }
        if let Some(end) = domain_end(b, at_pos + 1) {
            hit(start, end);
            from = end;
        }
    }
}

/// End of a domain starting at `i`: two or more labels (internationalised ones too), the
/// last ASCII-alphabetic (2+ letters, not a file extension), followed by no domain
/// character.
fn domain_end(b: &[u8], mut i: usize) -> Option<usize> {
    let mut labels = 0;
    let mut best = None;
    loop {
        let len = run(b, i, |c| {
            c.is_ascii_alphanumeric() || c == b'-' || c >= 0x80
        });
        if len == 0 || len > 63 || at(b, i) == b'-' || at(b, i + len - 1) == b'-' {
            break;
        }
        labels += 1;
        // The top-level domain is ASCII letters; what follows may be non-ASCII text
        // (`alice@example.com»`, `…example.com。`).
        let ascii = run(b, i, |c| c.is_ascii_alphanumeric() || c == b'-').min(len);
        let label = b.get(i..i + ascii)?;
        if labels >= 2
            && ascii >= 2
            && label.iter().all(u8::is_ascii_alphabetic)
            && !NOT_TLDS
                .iter()
                .any(|t| t.as_bytes().eq_ignore_ascii_case(label))
        {
            best = Some(i + ascii);
        }
        i += len;
        if at(b, i) == b'.' && (alnum(at(b, i + 1)) || at(b, i + 1) >= 0x80) {
            i += 1;
        } else {
            break;
        }
    }
    let end = best?;
    // Glued to more domain-ish text (`a@b.com_x`, `a@b.co@c`): not an address.
    if matches!(at(b, end), b'_' | b'@') || (at(b, end) == b'-' && alnum(at(b, end + 1))) {
        return None;
    }
    Some(end)
}

// ---- credit cards -------------------------------------------------------------------------

const MAX_GROUPS: usize = 24;

/// Card numbers: 13-19 digits, optionally in groups separated by one space or dash, the
/// first digit 2-6 (the card networks' ranges), Luhn-valid. Longer digit runs hold no card.
fn credit_card(b: &[u8], runs: &[(usize, usize)], hit: &mut dyn FnMut(usize, usize)) {
    let mut idx = 0usize;
    while let Some(&(i, first_end)) = runs.get(idx) {
        // A chain of digit groups: runs joined by one space or dash, at most MAX_GROUPS.
        let mut n = 1usize;
        let mut run_end = first_end;
        let mut digits = first_end - i;
        while n < MAX_GROUPS {
            match runs.get(idx + n) {
                Some(&(s, e)) if s == run_end + 1 && matches!(at(b, run_end), b' ' | b'-') => {
                    digits += e - s;
                    run_end = e;
                    n += 1;
                }
                _ => break,
            }
        }
        let groups = runs.get(idx..idx + n).unwrap_or(&[]);
        idx += n;
        if digits < 13 {
            continue; // no window reaches a card's 13 digits
        }
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
    }
}

fn luhn(b: &[u8], groups: &[(usize, usize)]) -> bool {
    // Every second digit from the right doubled, less 9 past 9: a table, not a branch.
    const DOUBLED: [u32; 10] = [0, 2, 4, 6, 8, 1, 3, 5, 7, 9];
    let mut sum = 0u32;
    let mut double = false;
    for &(s, e) in groups.iter().rev() {
        for &c in b.get(s..e).unwrap_or(&[]).iter().rev() {
            let d = u32::from(c.wrapping_sub(b'0'));
            sum += if double {
                DOUBLED.get(d as usize).copied().unwrap_or(d)
            } else {
                d
            };
            double = !double;
        }
    }
    sum % 10 == 0
}

// ---- US SSN -------------------------------------------------------------------------------

/// `AAA-GG-SSSS` (or with spaces), area not 000, 666 or 9xx, group not 00, serial not 0000,
/// not part of a longer dash/dot-separated number.
fn us_ssn(b: &[u8], runs: &[(usize, usize)], hit: &mut dyn FnMut(usize, usize)) {
    let mut from = 0usize;
    for &(i, e) in runs {
        if i + 11 > b.len() {
            break;
        }
        // The area is a run of exactly three digits.
        if i < from || e - i != 3 {
            continue;
        }
        let prev = before(b, i);
        let chained = |c: u8, next: u8| matches!(c, b'-' | b'.' | b'/') && digit(next);
        let prev2 = if i >= 2 { at(b, i - 2) } else { 0 };
        if alnum(prev) || chained(prev, prev2) {
            continue;
        }
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
                from = end;
            }
        }
    }
}

fn ssn_valid(b: &[u8], i: usize) -> bool {
    let num = |s: usize, n: usize| {
        (s..s + n).fold(0u32, |acc, k| {
            acc * 10 + u32::from(at(b, k).wrapping_sub(b'0'))
        })
    };
    let (area, group, serial) = (num(i, 3), num(i + 4, 2), num(i + 7, 4));
    area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
}

// ---- IBAN ---------------------------------------------------------------------------------

/// IBAN length by country (SWIFT IBAN registry).
const IBAN_LENGTHS: [(&[u8; 2], usize); 89] = [
    (b"AD", 24),
    (b"AE", 23),
    (b"AL", 28),
    (b"AT", 20),
    (b"AX", 18),
    (b"AZ", 28),
    (b"BA", 20),
    (b"BE", 16),
    (b"BG", 22),
    (b"BH", 22),
    (b"BI", 27),
    (b"BL", 27),
    (b"BR", 29),
    (b"BY", 28),
    (b"CH", 21),
    (b"CR", 22),
    (b"CY", 28),
    (b"CZ", 24),
    (b"DE", 22),
    (b"DJ", 27),
    (b"DK", 18),
    (b"DO", 28),
    (b"EE", 20),
    (b"EG", 29),
    (b"ES", 24),
    (b"FI", 18),
    (b"FK", 18),
    (b"FO", 18),
    (b"FR", 27),
    (b"GB", 22),
    (b"GE", 22),
    (b"GF", 27),
    (b"GG", 22),
    (b"GI", 23),
    (b"GL", 18),
    (b"GP", 27),
    (b"GR", 27),
    (b"GT", 28),
    (b"HN", 28),
    (b"HR", 21),
    (b"HU", 28),
    (b"IE", 22),
    (b"IL", 23),
    (b"IM", 22),
    (b"IQ", 23),
    (b"IS", 26),
    (b"IT", 27),
    (b"JE", 22),
    (b"JO", 30),
    (b"KW", 30),
    (b"KZ", 20),
    (b"LB", 28),
    (b"LC", 32),
    (b"LI", 21),
    (b"LT", 20),
    (b"LU", 20),
    (b"LV", 21),
    (b"LY", 25),
    (b"MC", 27),
    (b"MD", 24),
    (b"ME", 22),
    (b"MF", 27),
    (b"MK", 19),
    (b"MN", 20),
    (b"MQ", 27),
    (b"MR", 27),
    (b"MT", 31),
    (b"MU", 30),
    (b"NC", 27),
    (b"NI", 28),
    (b"NL", 18),
    (b"NO", 15),
    (b"OM", 23),
    (b"PF", 27),
    (b"PK", 24),
    (b"PL", 28),
    (b"PM", 27),
    (b"PS", 29),
    (b"PT", 25),
    (b"QA", 29),
    (b"RE", 27),
    (b"RO", 24),
    (b"RS", 22),
    (b"RU", 33),
    (b"SA", 24),
    (b"SC", 31),
    (b"SD", 18),
    (b"SE", 24),
    (b"SI", 19),
];

/// Registry entries past the first table (kept apart so each array stays readable).
const IBAN_LENGTHS_2: [(&[u8; 2], usize); 13] = [
    (b"SK", 24),
    (b"SM", 27),
    (b"SO", 23),
    (b"ST", 25),
    (b"SV", 28),
    (b"TF", 27),
    (b"TL", 23),
    (b"TN", 24),
    (b"TR", 26),
    (b"UA", 29),
    (b"VA", 22),
    (b"VG", 24),
    (b"XK", 20),
];

fn iban_length(cc: [u8; 2]) -> Option<usize> {
    let cc = cc.map(|c| c.to_ascii_uppercase());
    IBAN_LENGTHS
        .iter()
        .chain(IBAN_LENGTHS_2.iter())
        .find(|(c, _)| **c == cc)
        .map(|&(_, n)| n)
}

/// An IBAN: country code, two check digits, the country's exact length, written compact or
/// in groups of four separated by single spaces, one letter case throughout, mod-97 == 1.
fn iban(b: &[u8], runs: &[(usize, usize)], hit: &mut dyn FnMut(usize, usize)) {
    // A candidate's check digits start a run of two or more digits (the country code is
    // letters): one look per digit run rather than per byte.
    let mut from = 0usize;
    for &(p, run_end) in runs {
        if p < from || run_end - p < 2 {
            continue;
        }
        if let Some(i) = p.checked_sub(2) {
            if i >= from
                && i + 15 <= b.len()
                && at(b, i).is_ascii_alphabetic()
                && at(b, i + 1).is_ascii_alphabetic()
                && !alnum(before(b, i))
            {
                if let Some(end) = iban_at(b, i) {
                    hit(i, end);
                    from = end;
                }
            }
        }
    }
}

fn iban_at(b: &[u8], i: usize) -> Option<usize> {
    let len = iban_length([at(b, i), at(b, i + 1)])?;
    let mut chars = [0u8; 34];
    let mut n = 0usize;
    let mut j = i;
    while n < len {
        let c = at(b, j);
        if alnum(c) {
            *chars.get_mut(n)? = c;
            n += 1;
            j += 1;
        } else if c == b' ' && n % 4 == 0 && alnum(at(b, j + 1)) {
            j += 1;
        } else {
            return None;
        }
    }
    if alnum(at(b, j)) {
        return None;
    }
    let chars = chars.get(..len)?;
    let upper = chars.iter().any(u8::is_ascii_uppercase);
    let lower = chars.iter().any(u8::is_ascii_lowercase);
    if upper && lower {
        return None;
    }
    let rotated = chars.get(4..)?.iter().chain(chars.get(..4)?.iter());
    let mut r = 0u32;
    for &c in rotated {
        r = if digit(c) {
            (r * 10 + u32::from(c - b'0')) % 97
        } else {
            (r * 100 + u32::from(c.to_ascii_uppercase() - b'A') + 10) % 97
        };
    }
    (r == 1).then_some(j)
}

// ---- phone (E.164) ------------------------------------------------------------------------

/// `+` then a country code (first digit 1-9) and 8-15 digits in all, optionally grouped by
/// single spaces, dashes or dots, with at most one parenthesised group: `+1 (415) 555-2671`,
/// `+44 20 7946 0958`, `+14155552671`.
fn phone(b: &[u8], hit: &mut dyn FnMut(usize, usize)) {
    let mut from = 0usize;
    for p in memchr::memchr_iter(b'+', b) {
        if p < from {
            continue;
        }
        let prev = before(b, p);
        if alnum(prev) || prev == b'+' || !matches!(at(b, p + 1), b'1'..=b'9') {
            continue;
        }
        if let Some(end) = phone_end(b, p + 1) {
            hit(p, end);
            from = end;
        }
    }
}

fn phone_end(b: &[u8], mut i: usize) -> Option<usize> {
    let mut digits = 0usize;
    let mut end = i;
    let mut parens = 0; // 0: none yet, 1: open, 2: closed
    loop {
        let c = at(b, i);
        if digit(c) {
            digits += 1;
            if digits > 15 {
                return None;
            }
            i += 1;
            end = i;
        } else if matches!(c, b' ' | b'-' | b'.') && (digit(at(b, i + 1)) || at(b, i + 1) == b'(') {
            i += 1;
        } else if c == b'(' && parens == 0 && digit(at(b, i + 1)) {
            parens = 1;
            i += 1;
        } else if c == b')' && parens == 1 && digit(before(b, i)) {
            parens = 2;
            i += 1;
        } else {
            break;
        }
    }
    let next = at(b, end);
    if parens == 1 || digits < 8 || alnum(next) {
        return None;
    }
    Some(end)
}

// ---- IPv4 ---------------------------------------------------------------------------------

/// Dotted quads, each octet 0-255 without leading zeros, not part of a longer dotted
/// number (`1.2.3.4.5`) and not a version (`v1.2.3.4`, `version 1.2.3.4`).
fn ipv4(b: &[u8], runs: &[(usize, usize)], hit: &mut dyn FnMut(usize, usize)) {
    let mut from = 0usize;
    for &(i, e) in runs {
        if i + 7 > b.len() {
            break;
        }
        // The first octet: at most three digits, then a dot (what `ipv4_at` asks first).
        if i < from || e - i > 3 || at(b, e) != b'.' {
            continue;
        }
        let prev = before(b, i);
        let chained = prev == b'.' && digit(before(b, i.saturating_sub(1)));
        if !alnum(prev) && !chained {
            if let Some(end) = ipv4_at(b, i).filter(|_| !after_version_word(b, i)) {
                hit(i, end);
                from = end;
            }
        }
    }
}

fn ipv4_at(b: &[u8], mut i: usize) -> Option<usize> {
    for k in 0..4 {
        let len = run(b, i, digit);
        if len == 0 || len > 3 || (len > 1 && at(b, i) == b'0') {
            return None;
        }
        let v = (i..i + len).fold(0u32, |a, j| a * 10 + u32::from(at(b, j) - b'0'));
        if v > 255 {
            return None;
        }
        i += len;
        if k < 3 {
            if at(b, i) != b'.' {
                return None;
            }
            i += 1;
        }
    }
    let next = at(b, i);
    if alnum(next) || (matches!(next, b'.' | b'-') && digit(at(b, i + 1))) {
        return None;
    }
    Some(i)
}

/// Whether the word before `i` (skipping spaces) is `version`, `ver` or `v` (any case).
fn after_version_word(b: &[u8], i: usize) -> bool {
    let mut e = i;
    while e > 0 && matches!(before(b, e), b' ' | b':' | b'=') {
        e -= 1;
    }
    let mut s = e;
    while s > 0 && before(b, s).is_ascii_alphabetic() && e - s < 8 {
        s -= 1;
    }
    let word = b.get(s..e).unwrap_or(&[]);
    ["version", "ver", "v"]
        .iter()
        .any(|w| w.as_bytes().eq_ignore_ascii_case(word))
}

// ---- JWT ----------------------------------------------------------------------------------

/// `eyJ...` (a base64url JSON header) `.` payload `.` signature (possibly empty), and the
/// extra segments of a JWE.
fn jwt(b: &[u8], hit: &mut dyn FnMut(usize, usize)) {
    let mut from = 0usize;
    for j in memchr::memchr_iter(b'J', b) {
        let Some(p) = j.checked_sub(2) else {
            continue;
        };
        if p < from || b.get(p..j) != Some(b"ey") || b64url(before(b, p)) {
            continue;
        }
        let h = run(b, p, b64url);
        if h < 10 || at(b, p + h) != b'.' {
            continue;
        }
        let q = p + h + 1;
        let pl = run(b, q, b64url);
        if pl < 2 || at(b, q + pl) != b'.' {
            continue;
        }
        let mut end = q + pl + 1;
        end += run(b, end, b64url);
        while at(b, end) == b'.' && b64url(at(b, end + 1)) {
            end += 1 + run(b, end + 1, b64url);
        }
        hit(p, end);
        from = end;
    }
}

// ---- bearer tokens ------------------------------------------------------------------------

fn token_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
}

/// The credential after `Bearer ` (any case), not the word itself: 8+ token characters with
/// a digit or a symbol, or 20+ letters of mixed case (so `bearer of bad news` is no token).
fn bearer(b: &[u8], hit: &mut dyn FnMut(usize, usize)) {
    for p in memchr::memchr2_iter(b'b', b'B', b) {
        let word = b.get(p..p + 6).unwrap_or(&[]);
        if !word.eq_ignore_ascii_case(b"bearer") || alnum(before(b, p)) {
            continue;
        }
        let ws = run(b, p + 6, |c| c == b' ' || c == b'\t');
        if ws == 0 || ws > 4 {
            continue;
        }
        let t = p + 6 + ws;
        let mut len = run(b, t, token_char);
        len += run(b, t + len, |c| c == b'=');
        let tok = b.get(t..t + len).unwrap_or(&[]);
        let symbol_or_digit = tok
            .iter()
            .any(|&c| c.is_ascii_digit() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/'));
        let mixed =
            tok.iter().any(u8::is_ascii_uppercase) && tok.iter().any(u8::is_ascii_lowercase);
        if (len >= 8 && symbol_or_digit) || (len >= 20 && mixed) {
            hit(t, t + len);
        }
    }
}

// ---- cloud and SaaS keys ------------------------------------------------------------------

fn upper_alnum(c: u8) -> bool {
    c.is_ascii_uppercase() || c.is_ascii_digit()
}

/// AWS access key ids: `AKIA` (long-term), `ASIA` (STS), `ABIA`, `ACCA`, `A3T?` + 16
/// upper-case alphanumerics (20 in all).
fn aws_access_key(b: &[u8], hit: &mut dyn FnMut(usize, usize)) {
    for p in memchr::memchr_iter(b'A', b) {
        let prefix = b.get(p..p + 4).unwrap_or(&[]);
        let known = matches!(prefix, b"AKIA" | b"ASIA" | b"ABIA" | b"ACCA")
            || (prefix.starts_with(b"A3T") && upper_alnum(at(b, p + 3)));
        if known
            && !alnum(before(b, p))
            && run(b, p + 4, upper_alnum) == 16
            && !alnum(at(b, p + 20))
        {
            hit(p, p + 20);
        }
    }
}

/// Google API keys: `AIza` + 35 base64url characters.
fn gcp_api_key(b: &[u8], hit: &mut dyn FnMut(usize, usize)) {
    for z in memchr::memchr_iter(b'z', b) {
        let Some(p) = z.checked_sub(2) else {
            continue;
        };
        if b.get(p..p + 4) == Some(b"AIza") && !b64url(before(b, p)) && run(b, p + 4, b64url) == 35
        {
            hit(p, p + 39);
        }
    }
}

/// GitHub tokens: `ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_` + 36 or more alphanumerics;
/// fine-grained `github_pat_` + 22 or more of `[A-Za-z0-9_]`.
fn github_token(b: &[u8], hit: &mut dyn FnMut(usize, usize)) {
    let glued = |p: usize| alnum(before(b, p)) || before(b, p) == b'_';
    for u in memchr::memchr_iter(b'_', b) {
        // `gh?_` + 36 or more alphanumerics
        if let Some(p) = u.checked_sub(3) {
            if at(b, p) == b'g'
                && at(b, p + 1) == b'h'
                && matches!(at(b, p + 2), b'p' | b'o' | b'u' | b's' | b'r')
                && !glued(p)
            {
                let n = run(b, u + 1, alnum);
                if n >= 36 && at(b, u + 1 + n) != b'_' {
                    hit(p, u + 1 + n);
                }
            }
        }
        // `github_pat_` + 22 or more of `[A-Za-z0-9_]`
        if let Some(p) = u.checked_sub(6) {
            if b.get(p..u + 5) == Some(b"github_pat_") && !glued(p) {
                let n = run(b, u + 5, |c| c.is_ascii_alphanumeric() || c == b'_');
                if n >= 22 {
                    hit(p, u + 5 + n);
                }
            }
        }
    }
}

/// Slack tokens: `xoxa-`, `xoxb-`, `xoxp-`, `xoxo-`, `xoxr-`, `xoxs-` and app tokens
/// `xapp-`, each followed by 10 or more of `[A-Za-z0-9-]`.
fn slack_token(b: &[u8], hit: &mut dyn FnMut(usize, usize)) {
    let mut from = 0usize;
    for p in memchr::memchr_iter(b'x', b) {
        if p < from || alnum(before(b, p)) {
            continue;
        }
        let head = b.get(p..p + 5).unwrap_or(&[]);
        let known = head == b"xapp-"
            || (head.starts_with(b"xox")
                && matches!(at(b, p + 3), b'a' | b'b' | b'p' | b'o' | b'r' | b's')
                && at(b, p + 4) == b'-');
        if !known {
            continue;
        }
        let n = run(b, p + 5, |c| c.is_ascii_alphanumeric() || c == b'-');
        if n >= 10 {
            hit(p, p + 5 + n);
            from = p + 5 + n;
        }
    }
}

/// PEM private keys: from `-----BEGIN <label>PRIVATE KEY<...>-----` to the matching
/// `-----END ...-----`, or to the end of the string when the block is cut short.
fn private_key(s: &str, hit: &mut dyn FnMut(usize, usize)) {
    const BEGIN: &str = "-----BEGIN ";
    let mut from = 0usize;
    for p in literal_iter(s.as_bytes(), BEGIN.as_bytes()) {
        if p < from {
            continue;
        }
        let label_start = p + BEGIN.len();
        let Some(rest) = s.get(label_start..) else {
            continue;
        };
        let Some(close) = rest.get(..rest.len().min(64)).and_then(|r| r.find("-----")) else {
            continue;
        };
        let Some(label) = rest.get(..close) else {
            continue;
        };
        if !label.contains("PRIVATE KEY")
            || !label.bytes().all(|c| c.is_ascii_uppercase() || c == b' ')
        {
            continue;
        }
        let body = label_start + close + 5;
        let end = s
            .get(body..)
            .and_then(|tail| {
                let mut search = 0usize;
                loop {
                    let off = tail.get(search..)?.find("-----END ")? + search;
                    let lab = off + "-----END ".len();
                    if tail.get(lab..lab + label.len()) == Some(label)
                        && tail.get(lab + label.len()..lab + label.len() + 5) == Some("-----")
                    {
                        return Some(body + lab + label.len() + 5);
                    }
                    search = off + 1;
                }
            })
            .unwrap_or(s.len());
        hit(p, end);
        from = end;
    }
}

#[cfg(test)]
mod reference;

#[cfg(test)]
mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::ids::IdGen;

    /// Random text over bytes the word-wise helpers must tell apart: digits and their
    /// neighbours in ASCII (`/`, `:`), dots, the anchors, letters, and bytes >= 0x80 (whose
    /// low 7 bits are digits or dots: `0xB0`..`0xB9`, `0xAE`), cut into valid UTF-8.
    fn texts() -> Vec<String> {
        const BYTES: &[u8] = b"0123456789/:.@+JAz_x-bB \t\nqQ\x7f";
        const WIDE: [&str; 6] = [
            "\u{b0}",
            "\u{3b9}",
            "\u{2e}",
            "\u{ae}",
            "\u{1f600}",
            "\u{630}",
        ];
        let mut g = IdGen::new(7);
        let mut out = Vec::new();
        for _ in 0..3000 {
            let len = (g.next_u64() % 70) as usize;
            let mut s = String::new();
            while s.len() < len {
                let r = g.next_u64();
                if r % 9 == 0 {
                    s.push_str(WIDE[(r / 9 % WIDE.len() as u64) as usize]);
                } else {
                    s.push(char::from(BYTES[(r / 9 % BYTES.len() as u64) as usize]));
                }
            }
            out.push(s);
        }
        // Every byte value in every lane.
        for c in 0u8..=255 {
            for at in 0..9 {
                let mut b = vec![b'q'; 17];
                b[at] = c;
                out.push(String::from_utf8_lossy(&b).into_owned());
            }
        }
        out
    }

    /// The runs are the maximal runs of digits, for every text.
    #[test]
    fn digit_runs_are_the_maximal_runs() {
        let mut runs = Vec::new();
        let mut texts = texts();
        texts.push(crate::testkit::workload::filler(64 * 1024 + 5));
        texts.push("0".repeat(40));
        for s in texts {
            let b = s.as_bytes();
            digit_runs(b, &mut runs);
            let mut want = Vec::new();
            let mut i = reference::next_digit(b, 0);
            while i < b.len() {
                let e = i + run(b, i, digit);
                want.push((i, e));
                i = reference::next_digit(b, e);
            }
            assert_eq!(runs, want, "{s:?}");
        }
    }

    /// Text the digit-led detectors must tell apart: digit groups of every length joined by
    /// spaces, dashes, dots and slashes, letters (IBAN country codes, version words, glued
    /// words), real cards, SSNs, IBANs and addresses, and non-ASCII bytes.
    fn digit_texts() -> Vec<String> {
        const PIECES: [&str; 31] = [
            "0",
            "1",
            "7",
            "12",
            "255",
            "256",
            "010",
            "123",
            "4111",
            "1111",
            "078",
            "05",
            "6789",
            " ",
            " ",
            "-",
            ".",
            "/",
            "a",
            "Q",
            "GB",
            "DE",
            "de",
            "v",
            "version ",
            "4111 1111 1111 1111",
            "078-05-1120",
            "GB82 WEST 1234 5698 7654 32",
            "DE89370400440532013000",
            "192.168.0.1",
            "\u{e9}",
        ];
        let mut g = IdGen::new(23);
        let mut out = Vec::new();
        for _ in 0..6000 {
            let parts = 1 + (g.next_u64() % 24) as usize;
            let mut s = String::new();
            for _ in 0..parts {
                let r = g.next_u64();
                s.push_str(PIECES[(r % PIECES.len() as u64) as usize]);
            }
            out.push(s);
        }
        out.push(crate::testkit::workload::filler(64 * 1024));
        // Chains of more than MAX_GROUPS groups, cards at every offset in them.
        for k in 20..30 {
            out.push(format!("{}4111 1111 1111 1111", "1 ".repeat(k)));
            out.push(format!("{}4111-1111-1111-1111 1", "12-".repeat(k)));
        }
        out.extend(texts());
        out
    }

    /// The walkers over [`digit_runs`] find exactly what the byte walkers they replaced
    /// (kept in `reference`) found, span for span.
    #[test]
    fn run_driven_detectors_find_what_the_byte_walkers_found() {
        let mut runs = Vec::new();
        let mut hits = [0usize; 4];
        for s in digit_texts() {
            let b = s.as_bytes();
            digit_runs(b, &mut runs);
            let four = [
                Detector::CreditCard,
                Detector::UsSsn,
                Detector::Iban,
                Detector::Ipv4,
            ];
            for (d, n) in four.into_iter().zip(hits.iter_mut()) {
                let (mut new, mut old) = (Vec::new(), Vec::new());
                d.find_with(&s, &runs, &mut |a, z| new.push((a, z)));
                let mut push = |a, z| old.push((a, z));
                match d {
                    Detector::CreditCard => reference::credit_card(b, &mut push),
                    Detector::UsSsn => reference::us_ssn(b, &mut push),
                    Detector::Iban => reference::iban(b, &mut push),
                    _ => reference::ipv4(b, &mut push),
                }
                assert_eq!(new, old, "{} in {s:?}", d.name());
                *n += new.len();
            }
        }
        // The texts hold matches of every kind, not only misses.
        assert!(hits.iter().all(|&n| n > 100), "{hits:?} matches");
    }

    #[test]
    fn word_wise_features_are_the_byte_wise_ones() {
        for s in texts() {
            assert_eq!(Features::of(&s), Features::of_bytewise(&s), "{s:?}");
        }
        let long = crate::testkit::workload::filler(64 * 1024 + 5);
        assert_eq!(Features::of(&long), Features::of_bytewise(&long));
    }
}
