//! The SSE parser with arbitrary chunking: never panics, never holds more than its bound, and
//! gives the same events (and the same `Last-Event-ID`, and the same "inside an event" state at
//! the end) whether the stream arrives whole, byte by byte, or cut at input-chosen points.
//!
//! Input: byte 0 picks the event bound (large, or small to reach the oversized path), byte 1
//! seeds the cut points, the rest is the stream.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcptrail::mcp::sse::{Event, Parser};
use mcptrail::ids::IdGen;

#[derive(Debug, PartialEq)]
struct Parsed {
    events: Vec<Event>,
    /// `Last-Event-ID` after each event, as a client would send it on reconnecting.
    last_ids: Vec<Option<String>>,
    last_event_id: Option<String>,
    pending: bool,
}

fn parse(chunks: &[&[u8]], max: usize) -> Parsed {
    let mut p = Parser::new(max);
    let mut events = Vec::new();
    let mut last_ids = Vec::new();
    for c in chunks {
        let before = events.len();
        p.feed(c, &mut events);
        assert!(
            p.buffered() <= max,
            "parser holds {} bytes, bound {max}",
            p.buffered()
        );
        for _ in before..events.len() {
            last_ids.push(p.last_event_id.clone());
        }
    }
    Parsed {
        events,
        last_ids,
        last_event_id: p.last_event_id.clone(),
        pending: p.buffered() > 0,
    }
}

fuzz_target!(|input: &[u8]| {
    let [sel, seed, stream @ ..] = input else {
        return;
    };
    let max = if sel & 1 == 0 {
        1 << 20
    } else {
        8 + (*sel as usize >> 1) * 3
    };
    let whole = parse(&[stream], max);
    for e in &whole.events {
        assert!(!e.oversized || e.data.is_empty());
        assert!(e.data.len() <= max);
    }
    // Byte by byte: every event comes out of the byte that completes it, so the
    // `Last-Event-ID` seen after each event is exact.
    let bytes: Vec<&[u8]> = stream.chunks(1).collect();
    let by_byte = parse(&bytes, max);
    assert_eq!(whole.events, by_byte.events, "whole vs byte by byte");
    assert_eq!(whole.last_event_id, by_byte.last_event_id);
    assert_eq!(whole.pending, by_byte.pending);
    // Input-chosen cuts (1..=24 bytes), with empty chunks in between now and then.
    let mut rng = IdGen::new(u64::from(*seed) << 32 | stream.len() as u64);
    let mut pieces: Vec<&[u8]> = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        let n = (1 + rng.next_u64() % 24) as usize;
        let (a, b) = rest.split_at(n.min(rest.len()));
        pieces.push(a);
        if rng.next_u64() % 8 == 0 {
            pieces.push(&[]);
        }
        rest = b;
    }
    let cut = parse(&pieces, max);
    assert_eq!(cut.events, by_byte.events, "cut vs byte by byte");
    assert_eq!(cut.last_event_id, by_byte.last_event_id);
    assert_eq!(cut.pending, by_byte.pending);
    // (`last_ids` is only exact byte by byte; it is what the differential check compares.)
    let _ = by_byte.last_ids;
});
