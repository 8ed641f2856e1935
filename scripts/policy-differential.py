#!/usr/bin/env python3
"""Differential check of the filter's policy verdicts against the official Python MCP SDK.

The property (issue 15): under a rule that denies `delete_*`, every request body the filter
forwards is one the SDK's server reads as the same method and tool the filter read, or one
the SDK rejects. A body the filter reads one way and the server another is a policy bypass.

Bodies are mutations of real `tools/call`s (the Python SDK fixtures' requests plus calls to
`delete_records` / `read_records`): members given twice in either order, members in another
case (ASCII and the Unicode folds U+017F/U+212A), escapes (\\uXXXX, \\/), whitespace JSON allows
and whitespace it does not, a BOM, deep nesting, numbers beyond f64 and huge integers, lone
and paired surrogates, raw bytes that are not UTF-8, NUL, trailing bytes, truncation, batches,
odd ids and names. The SDK side reads each body exactly as its Streamable HTTP server does
(`pydantic_core.from_json`, then `jsonrpc_message_adapter.validate_python(..., by_name=False)`).
The filter side is `cargo run --example policy_verdicts` (the glue over a recording host).

Usage: policy-differential.py [--bodies N] [--seed S] [--bin PATH]; exit 0 when all agree.
"""

import argparse
import base64
import fnmatch
import json
import os
import random
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

try:
    import pydantic_core
    from mcp.types import jsonrpc_message_adapter
except ImportError:
    sys.exit("policy-differential: needs the MCP Python SDK (run with .tools/venv/bin/python; make setup)")

try:
    from mcp.types import JSONRPCRequest
except ImportError:  # pragma: no cover
    JSONRPCRequest = None

DENIED = "delete_*"


def seeds():
    """Real requests: the Python SDK fixtures' bodies, and the calls the policy is about."""
    out = []
    path = os.path.join(ROOT, "filter/testdata/exchanges/python-sdk-json.json")
    with open(path, encoding="utf-8") as f:
        for ex in json.load(f)["exchanges"]:
            body = ex.get("request", {}).get("body")
            if body:
                out.append(json.loads(body))
    for name in ["delete_records", "read_records", "delete_all", "echo"]:
        out.append({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                    "params": {"name": name, "arguments": {"table": "users", "where": {"id": 1}}}})
    out.append({"jsonrpc": "2.0", "id": 8, "method": "tools/call",
                "params": {"name": "delete_records", "arguments": {},
                           "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                                     "io.modelcontextprotocol/clientCapabilities": {}}}})
    return out


def dumps(v, rng):
    return json.dumps(v, ensure_ascii=rng.random() < 0.5, separators=rng.choice([(",", ":"), (", ", ": ")]))


def escape_some(s, rng):
    """JSON string text of s with some characters written as \\uXXXX escapes."""
    out = []
    for ch in s:
        if rng.random() < 0.3 and ord(ch) < 0x10000:
            out.append("\\u%04x" % ord(ch) if rng.random() < 0.5 else "\\u%04X" % ord(ch))
        elif ch == "/" and rng.random() < 0.5:
            out.append("\\/")
        elif ch in '"\\':
            out.append("\\" + ch)
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def members(obj, rng, top):
    """Object text with members possibly duplicated, re-cased or escaped."""
    items = list(obj.items())
    parts = []
    for k, v in items:
        key = k
        if rng.random() < 0.08:
            key = rng.choice([k.upper(), k.capitalize(), k.replace("s", "\u017f"), k.replace("k", "\u212a")])
        vtext = value_text(v, rng, False)
        ktext = escape_some(key, rng) if rng.random() < 0.15 else json.dumps(key)
        parts.append(ktext + ":" + vtext)
        if rng.random() < 0.08:
            other = rng.choice(["delete_records", "read_records", "tools/call", "tools/list", 3, None, {"name": "delete_records"}])
            dup = json.dumps(k) + ":" + json.dumps(other)
            parts.insert(rng.randint(0, len(parts)), dup)
    ws = rng.choice(["", " ", "\n", "\t", "\r\n", " \u00a0", "\x0c"]) if rng.random() < 0.1 else ""
    return "{" + ws + ("," + ws).join(parts) + ws + "}"


def value_text(v, rng, top):
    if isinstance(v, dict):
        return members(v, rng, top)
    if isinstance(v, list):
        return "[" + ",".join(value_text(x, rng, False) for x in v) + "]"
    if isinstance(v, str):
        return escape_some(v, rng) if rng.random() < 0.2 else json.dumps(v, ensure_ascii=rng.random() < 0.5)
    return json.dumps(v)


NAMES = ["delete_records", "DELETE_RECORDS", " delete_records", "delete_records ", "delete_records\u0000",
         "delete\u005frecords", "delete_records\u200b", "read_records", "", "delete_", "delete_records/x"]
EXTRAS = ["1e400", "-1e400", "1e308", "123456789012345678901234567890", "-0", "1.0", "\"\\ud800\"",
          "\"\\udc00\\ud800\"", "\"\\ud83d\\ude00\"", "\"\\u0000\"", "NaN", "Infinity", "true"]


def mutate(seed, rng):
    msg = json.loads(json.dumps(seed))
    params = msg.get("params")
    if msg.get("method") == "tools/call" and isinstance(params, dict) and rng.random() < 0.4:
        params["name"] = rng.choice(NAMES)
    if rng.random() < 0.1:
        msg["id"] = rng.choice([None, 1.5, "x", {"a": 1}, [1], True, 2**70])
    if rng.random() < 0.05:
        msg["jsonrpc"] = rng.choice(["1.0", 2.0, None])
    if rng.random() < 0.05 and isinstance(params, dict):
        msg["params"] = rng.choice([[params.get("name")], "x", None, 3])
    text = value_text(msg, rng, True)
    r = rng.random()
    if r < 0.12:
        # An extra member in params/_meta or arguments holding an odd value.
        extra = rng.choice(EXTRAS)
        depth = rng.choice([1, 1, 50, 127, 128, 129, 300])
        extra = "[" * depth + extra + "]" * depth if depth > 1 else extra
        text = text.replace('"arguments":', '"pad":' + extra + ',"arguments":', 1) if '"arguments":' in text else \
            text.replace('"params":{', '"params":{"pad":' + extra + ",", 1)
    body = text.encode("utf-8", "surrogatepass")
    r = rng.random()
    if r < 0.04:
        body = b"\xef\xbb\xbf" + body
    elif r < 0.08:
        body = body + rng.choice([b" ", b"\n", b"x", b"{}", b",", b"\x00", b"  \r\n"])
    elif r < 0.11:
        body = body[: rng.randint(0, len(body))]
    elif r < 0.15:
        i = rng.randint(0, len(body))
        body = body[:i] + rng.choice([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00", b"\x80"]) + body[i:]
    elif r < 0.19:
        body = b"[" + body + (b"," + body if rng.random() < 0.5 else b"") + b"]"
    elif r < 0.22:
        body = rng.choice([b" ", b"\n\t", b"\r\n"]) + body
    return body


def sdk_reading(body):
    """(method, tool) as the SDK server reads the body, or None when it rejects it."""
    try:
        raw = pydantic_core.from_json(body)
        msg = jsonrpc_message_adapter.validate_python(raw, by_name=False)
    except Exception:  # the server answers 400 and runs nothing
        return None
    method = getattr(msg, "method", None)
    params = getattr(msg, "params", None)
    tool = None
    if method == "tools/call" and isinstance(params, dict):
        tool = params.get("name")
    return [method, tool]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bodies", type=int, default=5000)
    p.add_argument("--seed", type=int, default=15)
    p.add_argument("--bin", default=os.path.join(ROOT, "target/debug/examples/policy_verdicts"))
    a = p.parse_args()
    rng = random.Random(a.seed)
    base = seeds()
    bodies = [json.dumps(s).encode() for s in base]
    while len(bodies) < a.bodies:
        bodies.append(mutate(rng.choice(base), rng))
    stdin = "".join(base64.b64encode(b).decode() + "\n" for b in bodies)
    out = subprocess.run([a.bin], input=stdin, capture_output=True, text=True, check=True).stdout.splitlines()
    if len(out) != len(bodies):
        sys.exit(f"policy-differential: {len(out)} verdicts for {len(bodies)} bodies")
    forwarded = refused = sdk_rejected = agreed = denied_seen = 0
    problems = []
    for body, line in zip(bodies, out):
        v = json.loads(line)
        sdk = sdk_reading(body)
        if sdk and sdk[0] == "tools/call" and isinstance(sdk[1], str) and fnmatch.fnmatchcase(sdk[1], DENIED):
            denied_seen += 1
        if not v["forwarded"]:
            refused += 1
            continue
        forwarded += 1
        if sdk is None:
            sdk_rejected += 1
            continue
        calls = v["calls"]
        if len(calls) == 1 and calls[0] == sdk:
            agreed += 1
        else:
            problems.append((body, calls, sdk))
    print(f"policy-differential: {len(bodies)} bodies; the filter forwarded {forwarded} and refused {refused} "
          f"(SDK would run a denied tool on {denied_seen}); of those forwarded the SDK reads {agreed} the same way, "
          f"rejects {sdk_rejected}; {len(problems)} disagreements")
    for body, calls, sdk in problems[:10]:
        print(f"  DISAGREE: filter {calls} vs SDK {sdk}: {body[:200]!r}")
    print(f"{len(bodies) - len(problems)} passed, {len(problems)} failed")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
