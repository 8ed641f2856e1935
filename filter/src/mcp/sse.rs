//! Incremental `text/event-stream` parser (WHATWG HTML "server-sent events").
//!
//! Chunks may split anywhere: inside a line, between `\r` and `\n`, inside a UTF-8
//! character. Only the current incomplete line is kept, and an event larger than the bound is
//! reported as oversized instead of being buffered.

use std::borrow::Cow;

use crate::lanes;

const BOM: &[u8] = b"\xEF\xBB\xBF";
/// Largest line buffer kept between lines.
const KEPT_LINE_CAPACITY: usize = 16 * 1024;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Event {
    /// The `id` field of this event, if it had one.
    pub id: Option<String>,
    /// The `event` field (`message` when absent: borrowed, not allocated per event).
    pub event: Cow<'static, str>,
    /// The `data` lines joined with `\n`.
    pub data: String,
    pub retry: Option<u64>,
    /// The event exceeded the bound; `data` is empty.
    pub oversized: bool,
}

/// One dispatched event, borrowed from the parser (nothing is allocated per event: the
/// parser's field buffers are reused from event to event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventRef<'a> {
    pub id: Option<&'a str>,
    /// The event type (`message` when absent or empty).
    pub event: &'a str,
    pub data: &'a str,
    pub retry: Option<u64>,
    /// The event exceeded the bound; `data` is empty.
    pub oversized: bool,
}

impl EventRef<'_> {
    pub fn to_event(&self) -> Event {
        Event {
            id: self.id.map(str::to_string),
            event: if self.event == "message" {
                Cow::Borrowed("message")
            } else {
                Cow::Owned(self.event.to_string())
            },
            data: self.data.to_string(),
            retry: self.retry,
            oversized: self.oversized,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Parser {
    /// The incomplete line carried across chunks (a line wholly inside a chunk is read in
    /// place, never copied here).
    line: Vec<u8>,
    /// The current line has bytes (kept or, in an oversized event, dropped).
    in_line: bool,
    after_cr: bool,
    /// Bytes of a leading byte order mark matched so far; `None` once the start of the
    /// stream is decided (the mark may itself arrive split across chunks).
    bom: Option<usize>,
    data: String,
    has_data: bool,
    /// The `event` field (empty: the default type, as an empty field is).
    event: String,
    id: String,
    has_id: bool,
    retry: Option<u64>,
    size: usize,
    oversized: bool,
    max_event_bytes: usize,
    /// The last event id seen on the stream (what a client would send as `Last-Event-ID`).
    pub last_event_id: Option<String>,
}

impl Parser {
    pub fn new(max_event_bytes: usize) -> Self {
        Self {
            line: Vec::new(),
            in_line: false,
            after_cr: false,
            bom: Some(0),
            data: String::new(),
            has_data: false,
            event: String::new(),
            id: String::new(),
            has_id: false,
            retry: None,
            size: 0,
            oversized: false,
            max_event_bytes,
            last_event_id: None,
        }
    }

    /// Bytes held for the incomplete line (bounded by the event bound).
    pub fn buffered(&self) -> usize {
        self.line.len() + self.data.len() + self.bom.unwrap_or(0)
    }

    /// Feeds a chunk; complete events are appended to `out`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<Event>) {
        self.feed_with(chunk, |e| out.push(e.to_event()));
    }

    /// Feeds a chunk; each complete event is handed to `f` as it completes.
    pub fn feed_with(&mut self, mut chunk: &[u8], mut f: impl FnMut(EventRef<'_>)) {
        if let Some(mut matched) = self.bom {
            // One UTF-8 BOM may open the stream, and be split like anything else.
            while let (Some(&want), Some((&b, rest))) = (BOM.get(matched), chunk.split_first()) {
                if b != want {
                    break;
                }
                matched += 1;
                chunk = rest;
            }
            if matched < BOM.len() && chunk.is_empty() {
                self.bom = Some(matched);
                return;
            }
            self.bom = None;
            if matched < BOM.len() {
                // Not a BOM after all: what was held back opens the first line.
                self.push_line_bytes(BOM.get(..matched).unwrap_or_default());
            }
        }
        // Line ends are found eight bytes at a time (the bytes between them are not
        // inspected here).
        let mut start = 0;
        let mut pos = 0;
        while let Some(off) = chunk.get(pos..).and_then(find_eol) {
            let i = pos + off;
            if off > 0 {
                self.after_cr = false; // ordinary bytes came after the last `\r`
            }
            let b = chunk.get(i).copied().unwrap_or(b'\n');
            if b == b'\n' && self.after_cr {
                // Second half of a `\r\n` (possibly split across chunks).
                self.after_cr = false;
            } else {
                self.line_end(chunk.get(start..i).unwrap_or_default(), &mut f);
                self.after_cr = b == b'\r';
            }
            start = i + 1;
            pos = i + 1;
        }
        if pos < chunk.len() {
            self.after_cr = false;
        }
        if let Some(rest) = chunk.get(start..) {
            self.push_line_bytes(rest);
        }
    }

    /// Counts a piece of the current line against the bound; whether its bytes are kept
    /// (not once the event is oversized).
    fn admit(&mut self, part: &[u8]) -> bool {
        if part.is_empty() {
            return false;
        }
        self.in_line = true;
        self.size = self.size.saturating_add(part.len());
        // The decoded data counts too: an invalid byte decodes to a 3-byte U+FFFD.
        let held = self.data.len() + self.line.len() + part.len();
        if self.oversized || self.size > self.max_event_bytes || held > self.max_event_bytes {
            self.oversized = true;
            self.line.clear();
            self.data.clear();
            return false;
        }
        true
    }

    fn push_line_bytes(&mut self, part: &[u8]) {
        if self.admit(part) {
            self.line.extend_from_slice(part);
        }
    }

    /// A line ends with `part`: read in place when nothing of it was carried over.
    fn line_end(&mut self, part: &[u8], f: &mut impl FnMut(EventRef<'_>)) {
        if self.line.is_empty() {
            let kept = self.admit(part);
            self.take_line(if kept { part } else { &[] }, f);
            return;
        }
        self.push_line_bytes(part);
        // The line buffer goes back emptied, its capacity kept (one allocation per stream,
        // not one per line), unless a long line grew it: a stream may stay open for hours.
        let mut line = std::mem::take(&mut self.line);
        self.take_line(&line, f);
        if line.capacity() <= KEPT_LINE_CAPACITY {
            line.clear();
            self.line = line;
        }
    }

    fn take_line(&mut self, line: &[u8], f: &mut impl FnMut(EventRef<'_>)) {
        // A blank line dispatches; a line emptied because its event is oversized does not
        // (the event's later lines must not turn into an event of their own).
        if !std::mem::take(&mut self.in_line) {
            self.dispatch(f);
            return;
        }
        if self.oversized {
            return;
        }
        if line.first() == Some(&b':') {
            return; // comment
        }
        // Split on the bytes: `:` and ` ` are ASCII, which the lossy decoding keeps as they
        // are, so splitting before decoding gives the same field and value; only the value
        // of a field that is kept is decoded.
        // (A field name is a few bytes: a plain search beats memchr's setup.)
        let (field, value) = match line.iter().position(|&c| c == b':') {
            Some(i) => {
                let v = line.get(i + 1..).unwrap_or_default();
                (
                    line.get(..i).unwrap_or_default(),
                    v.strip_prefix(b" ").unwrap_or(v),
                )
            }
            None => (line, &[][..]),
        };
        match field {
            b"data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(&text(value));
                self.has_data = true;
                if self.data.len() > self.max_event_bytes {
                    self.oversized = true;
                    self.data.clear();
                }
            }
            b"event" => {
                self.event.clear();
                self.event.push_str(&text(value));
            }
            b"id" if !value.contains(&0) => {
                self.id.clear();
                self.id.push_str(&text(value));
                self.has_id = true;
            }
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                self.retry = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
            }
            _ => {}
        }
    }

    fn dispatch(&mut self, f: &mut impl FnMut(EventRef<'_>)) {
        let has_id = std::mem::take(&mut self.has_id);
        if has_id {
            // Reuses the held id's allocation.
            match self.last_event_id.as_mut() {
                Some(last) => {
                    last.clear();
                    last.push_str(&self.id);
                }
                None => self.last_event_id = Some(self.id.clone()),
            }
        }
        let retry = self.retry.take();
        let has_data = std::mem::replace(&mut self.has_data, false);
        let oversized = std::mem::replace(&mut self.oversized, false);
        self.size = 0;
        if oversized || has_data {
            f(EventRef {
                id: has_id.then_some(self.id.as_str()),
                // An empty `event` field means the default type too (WHATWG).
                event: if self.event.is_empty() {
                    "message"
                } else {
                    &self.event
                },
                data: if oversized { "" } else { &self.data },
                retry,
                oversized,
            });
        }
        // The buffers are kept for the next event, unless a large event grew them.
        for buf in [&mut self.data, &mut self.event, &mut self.id] {
            if buf.capacity() > KEPT_LINE_CAPACITY {
                *buf = String::new();
            } else {
                buf.clear();
            }
        }
    }
}

/// The first `\n` or `\r` in `b`, eight bytes at a time (the portable memchr that wasm
/// gets goes four at a time).
fn find_eol(b: &[u8]) -> Option<usize> {
    lanes::find(b, 0, |x| lanes::eq(x, b'\n') | lanes::eq(x, b'\r'))
}

/// A field value as text (invalid UTF-8 decoded lossily; valid text, nearly all of it, is
/// only checked).
fn text(value: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(value) {
        Ok(t) => Cow::Borrowed(t),
        Err(_) => String::from_utf8_lossy(value),
    }
}

/// The previous parser (each line copied into the line buffer, an allocation per event),
/// kept as the reference of the differential tests.
#[cfg(test)]
mod reference {
    use super::*;

    #[derive(Debug, Clone)]
    pub struct OldParser {
        line: Vec<u8>,
        /// The current line has bytes (kept or, in an oversized event, dropped).
        in_line: bool,
        after_cr: bool,
        /// Bytes of a leading byte order mark matched so far; `None` once the start of the
        /// stream is decided (the mark may itself arrive split across chunks).
        bom: Option<usize>,
        data: String,
        has_data: bool,
        event: Option<String>,
        id: Option<String>,
        retry: Option<u64>,
        size: usize,
        oversized: bool,
        max_event_bytes: usize,
        /// The last event id seen on the stream (what a client would send as `Last-Event-ID`).
        pub last_event_id: Option<String>,
    }

    impl OldParser {
        pub fn new(max_event_bytes: usize) -> Self {
            Self {
                line: Vec::new(),
                in_line: false,
                after_cr: false,
                bom: Some(0),
                data: String::new(),
                has_data: false,
                event: None,
                id: None,
                retry: None,
                size: 0,
                oversized: false,
                max_event_bytes,
                last_event_id: None,
            }
        }

        /// Bytes held for the incomplete line (bounded by the event bound).
        pub fn buffered(&self) -> usize {
            self.line.len() + self.data.len() + self.bom.unwrap_or(0)
        }

        /// Feeds a chunk; complete events are appended to `out`.
        pub fn feed(&mut self, mut chunk: &[u8], out: &mut Vec<Event>) {
            if let Some(mut matched) = self.bom {
                // One UTF-8 BOM may open the stream, and be split like anything else.
                while let (Some(&want), Some((&b, rest))) = (BOM.get(matched), chunk.split_first())
                {
                    if b != want {
                        break;
                    }
                    matched += 1;
                    chunk = rest;
                }
                if matched < BOM.len() && chunk.is_empty() {
                    self.bom = Some(matched);
                    return;
                }
                self.bom = None;
                if matched < BOM.len() {
                    // Not a BOM after all: what was held back opens the first line.
                    self.push_line_bytes(BOM.get(..matched).unwrap_or_default());
                }
            }
            // Line ends are found with memchr (the bytes between them are copied, not inspected).
            let mut start = 0;
            let mut pos = 0;
            while let Some(off) = chunk
                .get(pos..)
                .and_then(|r| memchr::memchr2(b'\n', b'\r', r))
            {
                let i = pos + off;
                if off > 0 {
                    self.after_cr = false; // ordinary bytes came after the last `\r`
                }
                let b = chunk.get(i).copied().unwrap_or(b'\n');
                if b == b'\n' && self.after_cr {
                    // Second half of a `\r\n` (possibly split across chunks).
                    self.after_cr = false;
                } else {
                    if let Some(part) = chunk.get(start..i) {
                        self.push_line_bytes(part);
                    }
                    self.end_line(out);
                    self.after_cr = b == b'\r';
                }
                start = i + 1;
                pos = i + 1;
            }
            if pos < chunk.len() {
                self.after_cr = false;
            }
            if let Some(rest) = chunk.get(start..) {
                self.push_line_bytes(rest);
            }
        }

        fn push_line_bytes(&mut self, part: &[u8]) {
            if part.is_empty() {
                return;
            }
            self.in_line = true;
            self.size = self.size.saturating_add(part.len());
            // The decoded data counts too: an invalid byte decodes to a 3-byte U+FFFD.
            let held = self.data.len() + self.line.len() + part.len();
            if self.oversized || self.size > self.max_event_bytes || held > self.max_event_bytes {
                self.oversized = true;
                self.line.clear();
                self.data.clear();
                return;
            }
            self.line.extend_from_slice(part);
        }

        fn end_line(&mut self, out: &mut Vec<Event>) {
            // The line buffer goes back emptied, its capacity kept (one allocation per stream,
            // not one per line), unless a long line grew it: a stream may stay open for hours.
            let mut line = std::mem::take(&mut self.line);
            self.take_line(&line, out);
            if line.capacity() <= KEPT_LINE_CAPACITY {
                line.clear();
                self.line = line;
            }
        }

        fn take_line(&mut self, line: &[u8], out: &mut Vec<Event>) {
            // A blank line dispatches; a line emptied because its event is oversized does not
            // (the event's later lines must not turn into an event of their own).
            if !std::mem::take(&mut self.in_line) {
                self.dispatch(out);
                return;
            }
            if self.oversized {
                return;
            }
            if line.first() == Some(&b':') {
                return; // comment
            }
            // Valid UTF-8 (nearly every line) is checked by the word-wise validator; only
            // invalid lines go through the lossy decoding, which gives the same text for valid.
            let text = match std::str::from_utf8(line) {
                Ok(t) => std::borrow::Cow::Borrowed(t),
                Err(_) => String::from_utf8_lossy(line),
            };
            let (field, value) = match text.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (text.as_ref(), ""),
            };
            match field {
                "data" => {
                    if self.has_data {
                        self.data.push('\n');
                    }
                    self.data.push_str(value);
                    self.has_data = true;
                    if self.data.len() > self.max_event_bytes {
                        self.oversized = true;
                        self.data.clear();
                    }
                }
                "event" => self.event = Some(value.to_string()),
                "id" if !value.contains('\0') => self.id = Some(value.to_string()),
                "retry" if !value.is_empty() && value.bytes().all(|c| c.is_ascii_digit()) => {
                    self.retry = value.parse().ok();
                }
                _ => {}
            }
        }

        fn dispatch(&mut self, out: &mut Vec<Event>) {
            let id = self.id.take();
            if id.is_some() {
                self.last_event_id.clone_from(&id);
            }
            // An empty `event` field means the default type too (WHATWG).
            let event = self.event.take().filter(|e| !e.is_empty());
            let retry = self.retry.take();
            let data = std::mem::take(&mut self.data);
            let has_data = std::mem::replace(&mut self.has_data, false);
            let oversized = std::mem::replace(&mut self.oversized, false);
            self.size = 0;
            if oversized {
                out.push(Event {
                    id,
                    event: event.map_or(Cow::Borrowed("message"), Cow::Owned),
                    data: String::new(),
                    retry,
                    oversized: true,
                });
            } else if has_data {
                out.push(Event {
                    id,
                    event: event.map_or(Cow::Borrowed("message"), Cow::Owned),
                    data,
                    retry,
                    oversized: false,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::ids::IdGen;

    fn parse_chunks(chunks: &[&[u8]]) -> Vec<Event> {
        let mut p = Parser::new(1 << 20);
        let mut out = Vec::new();
        for c in chunks {
            p.feed(c, &mut out);
        }
        out
    }

    fn parse(s: &str) -> Vec<Event> {
        parse_chunks(&[s.as_bytes()])
    }

    #[test]
    fn fields_comments_and_multiline_data() {
        let ev =
            parse(": keep-alive\n\nid: 7\nevent: message\ndata: {\"a\":\ndata:1}\nretry: 3000\n\n");
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].id.as_deref(), Some("7"));
        assert_eq!(ev[0].data, "{\"a\":\n1}");
        assert_eq!(ev[0].retry, Some(3000));
        assert_eq!(ev[0].event, "message");
    }

    #[test]
    fn line_endings_and_edge_cases() {
        assert_eq!(parse("data: a\r\n\r\n")[0].data, "a");
        assert_eq!(parse("data: a\r\rdata: b\n\n").len(), 2);
        assert_eq!(parse("data\n\n")[0].data, "");
        assert_eq!(parse("data:  two spaces\n\n")[0].data, " two spaces");
        assert!(parse("id: 1\n\n").is_empty(), "no data, no event");
        assert!(
            parse("data: incomplete").is_empty(),
            "not dispatched without a blank line"
        );
        assert_eq!(parse("\u{feff}data: x\n\n")[0].data, "x");
        assert_eq!(parse("retry: soon\ndata: x\n\n")[0].retry, None);
        let mut p = Parser::new(100);
        let mut out = Vec::new();
        p.feed(b"id: 5\ndata: x\n\nid: 6\ndata: y\n\n", &mut out);
        assert_eq!(p.last_event_id.as_deref(), Some("6"));
    }

    /// Fuzz finding (fuzz target `sse`): a BOM split across chunks was not stripped, so the
    /// first line was lost and a stream of only a BOM looked truncated.
    #[test]
    fn a_bom_split_across_chunks_is_still_a_bom() {
        let whole = parse("\u{feff}data: x\n\n");
        for cut in 1..3 {
            let (a, b) = "\u{feff}data: x\n\n".as_bytes().split_at(cut);
            assert_eq!(parse_chunks(&[a, b]), whole, "cut at {cut}");
        }
        let mut p = Parser::new(100);
        let mut out = Vec::new();
        for b in [&b"\xEF"[..], b"\xBB", b"\xBF"] {
            p.feed(b, &mut out);
        }
        assert_eq!(p.buffered(), 0, "only a BOM: nothing pending");
        // Not a BOM: the bytes held back belong to the line.
        let mut p = Parser::new(100);
        p.feed(b"\xEF\xBB", &mut out);
        assert_eq!(p.buffered(), 2);
        p.feed(b"x\ndata: y\n\n", &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].data, "y");
    }

    /// Found from a fuzz finding (target `sse`: bytes appended to an oversized event after
    /// it was cleared): the end of an oversized line was taken for a blank line, so the
    /// oversized event was dispatched early and its later lines became an event of their own,
    /// which the filter would have recorded although no client receives it as such.
    #[test]
    fn the_lines_after_an_oversized_line_stay_in_its_event() {
        let stream = format!(
            "data: {}\ndata: {{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{{}}}}\nid: 7\n\ndata: next\n\n",
            "x".repeat(100)
        );
        for chunk in [1, 7, stream.len()] {
            let mut p = Parser::new(64);
            let mut out = Vec::new();
            for c in stream.as_bytes().chunks(chunk) {
                p.feed(c, &mut out);
            }
            assert_eq!(out.len(), 2, "chunks of {chunk}: {out:?}");
            assert!(out[0].oversized && out[0].data.is_empty());
            assert_eq!(out[1].data, "next");
            // The fields of an oversized event are dropped with it (its `id` too).
            assert_eq!(p.last_event_id, None);
        }
    }

    /// Fuzz finding (target `sse`): invalid UTF-8 decodes to U+FFFD (3 bytes for 1), so an
    /// event's data could grow to three times the bound before it was counted.
    #[test]
    fn invalid_utf8_cannot_grow_an_event_past_the_bound() {
        let mut p = Parser::new(26);
        let mut out = Vec::new();
        let stream = b"data: \xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\ndata: \xff\xff\xff\xff\n";
        for b in stream.chunks(1) {
            p.feed(b, &mut out);
            assert!(p.buffered() <= 26, "{} bytes held", p.buffered());
        }
        p.feed(b"\n", &mut out);
        assert_eq!(out.len(), 1);
        assert!(out[0].oversized && out[0].data.is_empty());
    }

    /// Differential finding (`make sse-diff`, against the MCP Python SDK's reader): an empty
    /// `event` field gave the type `""` instead of the default `message`.
    #[test]
    fn an_empty_event_field_means_message() {
        assert_eq!(parse("event:\ndata: x\n\n")[0].event, "message");
        assert_eq!(parse("event: \ndata: x\n\n")[0].event, "message");
        assert_eq!(parse("event:  \ndata: x\n\n")[0].event, " ");
    }

    #[test]
    fn oversized_events_are_reported_not_buffered() {
        let mut p = Parser::new(64);
        let mut out = Vec::new();
        let big = format!("data: {}\n", "x".repeat(1000));
        for c in big.as_bytes().chunks(7) {
            p.feed(c, &mut out);
            assert!(p.buffered() <= 64);
        }
        p.feed(b"\ndata: small\n\n", &mut out);
        assert_eq!(out.len(), 2);
        assert!(out[0].oversized);
        assert_eq!(out[1].data, "small");
    }

    fn random_stream(g: &mut IdGen) -> (String, Vec<String>) {
        let eols = ["\n", "\r\n", "\r"];
        let mut s = String::new();
        let mut datas = Vec::new();
        for i in 0..(1 + g.next_u64() % 6) {
            let eol = eols[(g.next_u64() % 3) as usize];
            if g.next_u64() % 3 == 0 {
                s.push_str(&format!(": comment {i}{eol}"));
            }
            s.push_str(&format!("id: {i}{eol}"));
            let lines = 1 + g.next_u64() % 3;
            let mut data = Vec::new();
            for l in 0..lines {
                // Multi-byte characters so that splits land inside them.
                let v = format!("{{\"n\":{i},\"l\":{l},\"t\":\"héllo ✓ 🎉\"}}");
                s.push_str(&format!("data: {v}{eol}"));
                data.push(v);
            }
            s.push_str(eol);
            datas.push(data.join("\n"));
        }
        (s, datas)
    }

    /// Splitting any stream at any byte position (and into many random pieces) yields the
    /// same events as parsing it whole.
    #[test]
    fn split_anywhere_gives_the_same_events() {
        let mut g = IdGen::new(99);
        for _ in 0..40 {
            let (s, datas) = random_stream(&mut g);
            let b = s.as_bytes();
            let whole = parse_chunks(&[b]);
            assert_eq!(
                whole.iter().map(|e| e.data.clone()).collect::<Vec<_>>(),
                datas
            );
            for cut in 0..=b.len() {
                let (x, y) = b.split_at(cut);
                assert_eq!(parse_chunks(&[x, y]), whole, "cut at {cut}");
            }
            let mut pieces = Vec::new();
            let mut rest = b;
            while !rest.is_empty() {
                let n = 1 + (g.next_u64() as usize % 5).min(rest.len() - 1);
                let (a, r) = rest.split_at(n);
                pieces.push(a);
                rest = r;
            }
            assert_eq!(parse_chunks(&pieces), whole);
        }
    }

    /// A stream of random lines: every field (valid, odd and refused), comments, blank lines,
    /// a BOM, `\r`/`\n`/`\r\n`, invalid and multi-byte UTF-8, NUL, long lines.
    fn random_lines(g: &mut IdGen) -> Vec<u8> {
        let pieces: [&[u8]; 30] = [
            b"data: {\"a\":1}",
            b"data:x",
            b"data",
            b"data:",
            b"data:  two",
            b"data: h\xc3\xa9llo \xe2\x9c\x93 \xf0\x9f\x8e\x89",
            b"data: \xff\xfe bad \xc3",
            b"dat\xffa: x",
            b"id: 7",
            b"id:",
            b"id: a\0b",
            b"id: \xe2\x9c",
            b"event: ping",
            b"event:",
            b"event: message",
            b"event:  ",
            b"retry: 3000",
            b"retry: 99999999999999999999999",
            b"retry: 1x",
            b"retry:",
            b": comment",
            b":",
            b"",
            b"",
            b"",
            b"unknown: field",
            b"data: a:b:c",
            b"DATA: upper",
            b" data: lead",
            b"\xef\xbb\xbfdata: inner bom",
        ];
        let eols: [&[u8]; 3] = [b"\n", b"\r\n", b"\r"];
        let mut s = Vec::new();
        if g.next_u64() % 4 == 0 {
            s.extend_from_slice(BOM);
        }
        for _ in 0..(g.next_u64() % 40) {
            let n = (g.next_u64() % pieces.len() as u64) as usize;
            s.extend_from_slice(pieces.get(n).copied().unwrap_or_default());
            if g.next_u64() % 10 == 0 {
                s.extend(std::iter::repeat_n(b'z', (g.next_u64() % 200) as usize));
            }
            let e = (g.next_u64() % 3) as usize;
            s.extend_from_slice(eols.get(e).copied().unwrap_or_default());
        }
        s
    }

    /// Events, the `Last-Event-ID` and the bytes held after each chunk.
    fn trace<P>(
        p: &mut P,
        feed: impl Fn(&mut P, &[u8], &mut Vec<Event>),
        state: impl Fn(&P) -> (Option<String>, usize),
        chunks: &[&[u8]],
    ) -> Vec<(Vec<Event>, Option<String>, usize)> {
        chunks
            .iter()
            .map(|c| {
                let mut out = Vec::new();
                feed(p, c, &mut out);
                let (last, held) = state(p);
                (out, last, held)
            })
            .collect()
    }

    /// The parser against the previous one, on random streams cut at random points, one
    /// byte at a time and whole, under a large and several small bounds.
    #[test]
    fn parses_like_the_previous_parser() {
        let mut g = IdGen::new(7);
        for round in 0..3000 {
            let s = if round % 5 == 0 {
                random_stream(&mut g).0.into_bytes()
            } else {
                random_lines(&mut g)
            };
            let max = match round % 4 {
                0 => 1 << 20,
                _ => 8 + (g.next_u64() % 120) as usize,
            };
            let mut cuts: Vec<Vec<&[u8]>> = vec![vec![&s[..]], s.chunks(1).collect()];
            let mut pieces = Vec::new();
            let mut rest = &s[..];
            while !rest.is_empty() {
                let n = 1 + (g.next_u64() % 40) as usize;
                let (a, r) = rest.split_at(n.min(rest.len()));
                pieces.push(a);
                if g.next_u64() % 8 == 0 {
                    pieces.push(&[]);
                }
                rest = r;
            }
            cuts.push(pieces);
            for chunks in &cuts {
                let new = trace(
                    &mut Parser::new(max),
                    |p, c, out| p.feed(c, out),
                    |p| (p.last_event_id.clone(), p.buffered()),
                    chunks,
                );
                let old = trace(
                    &mut reference::OldParser::new(max),
                    |p, c, out| p.feed(c, out),
                    |p| (p.last_event_id.clone(), p.buffered()),
                    chunks,
                );
                assert_eq!(new, old, "{:?}", String::from_utf8_lossy(&s));
            }
        }
    }

    /// The word-wise line-end search finds what a byte-wise one does: every byte value at
    /// every position, after ordinary bytes of every kind.
    #[test]
    fn find_eol_is_the_first_line_end() {
        for filler in [b'a', 0x00, 0x0b, 0x0c, 0x0e, 0x8a, 0x8d, 0xff] {
            for len in 0..20 {
                for at in 0..=len {
                    for b in 0..=255u8 {
                        let mut v = vec![filler; len];
                        if let Some(x) = v.get_mut(at) {
                            *x = b;
                        }
                        if len % 3 == 0 {
                            v.push(b'\n');
                        }
                        let naive = v.iter().position(|&c| c == b'\n' || c == b'\r');
                        assert_eq!(find_eol(&v), naive, "{v:?}");
                    }
                }
            }
        }
    }

    /// The line buffer is reused between lines (and dropped after a long one): events come
    /// out the same cut anywhere, through valid and invalid UTF-8, after a line longer than
    /// the kept capacity.
    #[test]
    fn reused_line_buffer_splits_anywhere() {
        let long = "x".repeat(KEPT_LINE_CAPACITY + 10);
        let stream = format!(
            "id: 1\ndata: {{\"a\":\"é😀\"}}\n\ndata: \u{fffd}z\r\n\r\ndata: {long}\n\nid: 2\ndata: b\n\n"
        );
        let mut bytes = stream.into_bytes();
        // An invalid byte where the replacement character was.
        let bad = bytes
            .windows(3)
            .position(|w| w == "\u{fffd}".as_bytes())
            .unwrap();
        bytes.splice(bad..bad + 3, [0xff]);
        let whole = parse_chunks(&[&bytes]);
        assert_eq!(whole.len(), 4);
        assert_eq!(whole[1].data, "\u{fffd}z");
        assert_eq!(whole[3].data, "b");
        for cut in (0..bytes.len()).filter(|c| *c < 80 || c % 997 == 0 || *c > bytes.len() - 30) {
            let (a, b) = bytes.split_at(cut);
            assert_eq!(parse_chunks(&[a, b]), whole, "cut {cut}");
        }
    }
}
