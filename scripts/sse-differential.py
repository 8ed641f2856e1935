#!/usr/bin/env python3
"""Differential check of the filter's SSE parser against the official Python MCP SDK's.

The MCP Python SDK's Streamable HTTP client reads `text/event-stream` answers with httpx2's
`EventSource` (derived from httpx-sse); this script generates random streams (fields in any
order, data over several lines, comments, unknown fields, lines without a colon, ids with NUL,
retry, multi-byte and invalid UTF-8, LF/CR/CRLF mixed, a leading BOM, an unfinished last
event) cut into random chunks, reads each with that reference and with the filter's parser
(`cargo run --example sse_events`), and compares the events: type, data, the Last-Event-ID a
client holds after each, retry.

Where the reference itself departs from the WHATWG specification the filter follows, the
comparison accounts for it explicitly (each is also pinned by a unit test on our side):
  - no data, no event: the spec dispatches nothing for an event without data; the reference
    dispatches it with empty data, which the SDK then ignores. Events with empty data are
    left out on both sides.
  - BOM: the spec strips one leading U+FEFF; the reference decodes with plain UTF-8 and keeps
    it, losing the first line. The reference is given the stream without it.
  - CR at the very end: the reference dispatches a pending event when the stream ends in a
    lone CR; the spec discards it. Generated streams never end in a lone CR.
  - retry: the spec takes ASCII digits only; the reference takes whatever Python's int()
    takes (signs, spaces, underscores, other scripts' digits). Generated retry values are
    ASCII digits or text neither accepts.

Usage: sse-differential.py [--streams N] [--seed S] [--bin PATH]; exit 0 when all agree.
"""

import argparse
import base64
import json
import os
import random
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BOM = b"\xef\xbb\xbf"

try:
    import httpx2
    from httpx2 import EventSource
except ImportError:  # the SDK's HTTP client
    sys.exit("sse-differential: needs the MCP SDK's httpx2 (run with .tools/venv/bin/python; make setup)")

TEXTS = ["x", "hello", '{"jsonrpc":"2.0","id":1,"result":{}}', "héllo ✓ 🎉", "a: b", " lead", "",
         "trail ", "\t", ":", "data: nested", "id: 3", "日本語", "\x00", "\x7f"]
INVALID = [b"\xff", b"\xfe\xfe", b"\xc3", b"\xed\xa0\x80", b"\xe2\x82", b"\xf0\x9f\x8e"]
EOLS = [b"\n", b"\r", b"\r\n"]


def text(rng):
    parts = [rng.choice(TEXTS).encode() for _ in range(rng.randint(0, 3))]
    if rng.random() < 0.1:
        parts.insert(rng.randint(0, len(parts)), rng.choice(INVALID))
    return b"".join(parts)


def field_line(rng):
    r = rng.random()
    sep = rng.choice([b":", b": ", b":  "])
    if r < 0.45:
        return b"data" + sep + text(rng)
    if r < 0.5:
        return b"data"
    if r < 0.6:
        return b"id" + sep + rng.choice([b"1", b"e-2", b"", b"a\x00b", text(rng)])
    if r < 0.7:
        return b"event" + sep + rng.choice([b"message", b"", b"custom", text(rng)])
    if r < 0.78:
        value = rng.choice([str(rng.randint(0, 10**9)).encode(), b"", b"x", b"1x", b"soon", b"1.5"])
        return b"retry" + rng.choice([b":", b": "]) + value  # no space left in the value
    if r < 0.86:
        return b":" + text(rng)  # comment
    if r < 0.93:
        return rng.choice([b"unknown", b"Data", b"DATA", b" data", b"datax"]) + sep + text(rng)
    return text(rng).replace(b"\n", b"").replace(b"\r", b"")


def stream(rng):
    out = bytearray()
    if rng.random() < 0.1:
        out += BOM
    mixed = rng.random() < 0.3
    eol = rng.choice(EOLS)
    for _ in range(rng.randint(0, 6)):
        for _ in range(rng.randint(1, 5)):
            line = field_line(rng).replace(b"\n", b"").replace(b"\r", b"")
            out += line + (rng.choice(EOLS) if mixed else eol)
        out += rng.choice(EOLS) if mixed else eol  # blank line: dispatch
    if rng.random() < 0.2:
        out += field_line(rng).replace(b"\n", b"").replace(b"\r", b"")  # unfinished
    if out.endswith(b"\r"):
        out += b"\n"  # see the module doc: a lone CR at the very end
    return bytes(out)


def chunks(rng, data):
    out, i = [], 0
    while i < len(data):
        n = rng.choice([1, 1, 2, 3, 5, 8, 64, 4096])
        out.append(data[i:i + n])
        i += n
    return out


def reference(pieces):
    data = b"".join(pieces)
    if data.startswith(BOM):  # see the module doc
        rest = data[len(BOM):]
        pieces = [rest[:1], rest[1:]] if rest else []
    resp = httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=iter(pieces),
                           request=httpx2.Request("GET", "http://mcp.test/mcp"))
    return [{"event": e.event, "data": e.data, "id": e.id, "retry": e.retry}
            for e in EventSource(resp, max_event_size=None) if e.data != ""]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--streams", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=20261124)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/debug/examples/sse_events"))
    args = ap.parse_args()
    rng = random.Random(args.seed)
    cases = []
    for _ in range(args.streams):
        data = stream(rng)
        cases.append(chunks(rng, data))
    lines = "".join(json.dumps({"chunks": [base64.b64encode(c).decode() for c in cs]}) + "\n" for cs in cases)
    run = subprocess.run([args.bin], input=lines.encode(), capture_output=True, check=True)
    ours = [json.loads(l) for l in run.stdout.decode().splitlines()]
    assert len(ours) == len(cases), "the parser did not answer every stream"
    bad, events, fields = [], 0, {"multi-line data": 0, "ids": 0, "retry": 0, "bom": 0, "invalid utf-8": 0}
    for cs, got in zip(cases, ours):
        mine = [e for e in got["events"] if e["data"] != ""]
        ref = reference(cs)
        events += len(ref)
        data = b"".join(cs)
        fields["bom"] += data.startswith(BOM)
        fields["multi-line data"] += sum("\n" in e["data"] for e in ref)
        fields["ids"] += sum(e["id"] != "" for e in ref)
        fields["retry"] += sum(e["retry"] is not None for e in ref)
        fields["invalid utf-8"] += "\ufffd" in "".join(e["data"] for e in ref)
        if mine != ref:
            bad.append((data, mine, ref))
    print(f"sse-differential: {len(cases)} streams, {events} events with data, "
          f"{len(bad)} disagreements (seed {args.seed}); covered: "
          + ", ".join(f"{k} {v}" for k, v in fields.items()))
    for data, mine, ref in bad[:5]:
        print(f"  stream {data!r}\n    filter:    {mine}\n    reference: {ref}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
