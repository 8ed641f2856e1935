//! A hand-written reader of a message's top-level members, for the answers the filter only
//! classifies (each SSE event of a stream). It accepts exactly what serde_json's borrowed
//! reader (`RawValue` members, `IgnoredAny` for the rest) accepts on the common path and
//! gives the same member texts; on anything else (an escaped member name, nesting past
//! [`MAX_DEPTH`], any error) it answers `None` and the caller asks serde_json, so that errors
//! keep their texts. It exists because serde's generic reader, in V8, cost about as much per
//! small event as everything else the filter does with it.

use crate::lanes;

/// Containers nested deeper than this are left to serde (which has no such bound here).
const MAX_DEPTH: u32 = 120;

/// The top-level members the classification reads, as their JSON texts (the value alone,
/// without the whitespace around it, as `RawValue::get` gives it). A member given twice keeps
/// its last value.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Fields<'a> {
    pub jsonrpc: Option<&'a str>,
    pub id: Option<&'a str>,
    pub method: Option<&'a str>,
    pub params: Option<&'a str>,
    pub result: Option<&'a str>,
    pub error: Option<&'a str>,
}

/// The members of `text` when it is one JSON object serde reads the same way; `None` when
/// unsure.
pub fn members(text: &str) -> Option<Fields<'_>> {
    let mut s = Scan {
        b: text.as_bytes(),
        i: 0,
    };
    let mut f = Fields::default();
    s.ws();
    s.eat(b'{')?;
    s.ws();
    if !s.eat_if(b'}') {
        loop {
            s.eat(b'"')?;
            let k0 = s.i;
            s.plain_key()?;
            let key = s.b.get(k0..s.i.checked_sub(1)?)?;
            s.ws();
            s.eat(b':')?;
            s.ws();
            let v0 = s.i;
            s.value()?;
            let raw = text.get(v0..s.i)?;
            let slot = match key {
                b"jsonrpc" => Some(&mut f.jsonrpc),
                b"id" => Some(&mut f.id),
                b"method" => Some(&mut f.method),
                b"params" => Some(&mut f.params),
                b"result" => Some(&mut f.result),
                b"error" => Some(&mut f.error),
                _ => None,
            };
            if let Some(slot) = slot {
                *slot = Some(raw);
            }
            s.ws();
            match s.next()? {
                b',' => s.ws(),
                b'}' => break,
                _ => return None,
            }
        }
    }
    s.ws();
    (s.i == s.b.len()).then_some(f)
}

struct Scan<'a> {
    b: &'a [u8],
    i: usize,
}

impl Scan<'_> {
    #[inline(always)]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    #[inline(always)]
    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    #[inline(always)]
    fn eat(&mut self, want: u8) -> Option<()> {
        (self.next()? == want).then_some(())
    }

    #[inline(always)]
    fn eat_if(&mut self, want: u8) -> bool {
        let hit = self.peek() == Some(want);
        if hit {
            self.i += 1;
        }
        hit
    }

    /// JSON whitespace (serde's four bytes, not Unicode's).
    #[inline(always)]
    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    /// Past the ordinary bytes of a string (not `"`, `\` or a control character), eight at
    /// a time (a byte at a time was most of the reading in V8).
    #[inline(always)]
    fn plain(&mut self) {
        let special = |x: u64| lanes::eq(x, b'"') | lanes::eq(x, b'\\') | lanes::below(x, 0x20);
        self.i = lanes::find(self.b, self.i, special).unwrap_or(self.b.len());
    }

    /// The rest of a member name, through its closing quote; an escape is left to serde
    /// (which decodes names, and refuses some escapes in them that it lets pass in values).
    #[inline(always)]
    fn plain_key(&mut self) -> Option<()> {
        self.plain();
        self.eat(b'"')
    }

    /// The rest of a string value, through its closing quote, with serde's checks of what
    /// it skips: no control character, and escapes of the JSON set (`\u` and any four hex
    /// digits: surrogates are not paired when a value is skipped).
    #[inline(always)]
    fn string(&mut self) -> Option<()> {
        loop {
            self.plain();
            match self.next()? {
                b'"' => return Some(()),
                b'\\' => match self.next()? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                    b'u' => {
                        for _ in 0..4 {
                            if !self.next()?.is_ascii_hexdigit() {
                                return None;
                            }
                        }
                    }
                    _ => return None,
                },
                _ => return None, // a control character
            }
        }
    }

    #[inline(always)]
    fn digits(&mut self) -> usize {
        let start = self.i;
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
        self.i - start
    }

    /// A number in JSON's grammar (its size is not checked: serde does not when skipping).
    #[inline(always)]
    fn number(&mut self) -> Option<()> {
        self.eat_if(b'-');
        match self.next()? {
            b'0' => {
                if let Some(b'0'..=b'9') = self.peek() {
                    return None;
                }
            }
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return None,
        }
        if self.eat_if(b'.') && self.digits() == 0 {
            return None;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if self.digits() == 0 {
                return None;
            }
        }
        Some(())
    }

    #[inline(always)]
    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.i.checked_add(word.len())?;
        (self.b.get(self.i..end)? == word).then_some(())?;
        self.i = end;
        Some(())
    }

    /// A member name inside a skipped object and its colon, up to the value.
    #[inline(always)]
    fn key_colon(&mut self) -> Option<()> {
        self.eat(b'"')?;
        self.string()?;
        self.ws();
        self.eat(b':')?;
        self.ws();
        Some(())
    }

    /// One value (the first byte is not whitespace), iteratively: the open containers are
    /// bits of `open` (1: an object).
    fn value(&mut self) -> Option<()> {
        let mut open: u128 = 0;
        let mut depth: u32 = 0;
        loop {
            match self.peek()? {
                c @ (b'{' | b'[') => {
                    self.i += 1;
                    self.ws();
                    let close = if c == b'{' { b'}' } else { b']' };
                    if !self.eat_if(close) {
                        depth += 1;
                        if depth > MAX_DEPTH {
                            return None;
                        }
                        open = open << 1 | u128::from(c == b'{');
                        if c == b'{' {
                            self.key_colon()?;
                        }
                        continue;
                    }
                }
                b'"' => {
                    self.i += 1;
                    self.string()?;
                }
                b'-' | b'0'..=b'9' => self.number()?,
                b't' => self.literal(b"true")?,
                b'f' => self.literal(b"false")?,
                b'n' => self.literal(b"null")?,
                _ => return None,
            }
            // A value ended: close what it ends, or go on to the next element.
            loop {
                if depth == 0 {
                    return Some(());
                }
                let in_object = open & 1 == 1;
                self.ws();
                match self.next()? {
                    b',' => {
                        self.ws();
                        if in_object {
                            self.key_colon()?;
                        }
                        break;
                    }
                    b'}' if in_object => {}
                    b']' if !in_object => {}
                    _ => return None,
                }
                open >>= 1;
                depth -= 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    /// The word-wise skip stops where a byte-wise one does: every byte value, at every
    /// position of a word and past it, after ordinary bytes of every kind.
    #[test]
    fn plain_stops_at_the_first_special_byte() {
        let fillers: [u8; 6] = [b'a', b' ', 0x7f, 0x80, 0xff, b'!'];
        for filler in fillers {
            for len in 0..20 {
                for at in 0..=len {
                    for special in 0..=255u8 {
                        let mut b = vec![filler; len];
                        if let Some(x) = b.get_mut(at) {
                            *x = special;
                        }
                        // A second special byte after the first must not move the answer.
                        b.push(b'"');
                        let naive = b
                            .iter()
                            .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
                            .unwrap_or(b.len());
                        let mut s = Scan { b: &b, i: 0 };
                        s.plain();
                        assert_eq!(
                            s.i, naive,
                            "filler {filler:#x} len {len} at {at} byte {special:#x}"
                        );
                    }
                }
            }
        }
    }
}
