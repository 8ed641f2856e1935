"""Records real MCP exchanges as decoder fixtures (filter/testdata/exchanges/*.json).

Talks raw HTTP to real servers: @modelcontextprotocol/server-everything (npm), the official
Python SDK (integration/py/fixture_server.py) and the rmcp demo server, so the bytes are the
servers' own. Each exchange carries what an independent (Python) reading of it expects: for
every request id in the body, the status of its reply, and the server messages seen. The
filter's decoder tests replay the bytes and must agree.

    make fixtures      (starts the servers, writes the files)
"""

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx2 as httpx

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "filter" / "testdata" / "exchanges"
TOOLS = Path(os.environ.get("MCPTRAIL_TOOLS", ROOT / ".tools"))
ACCEPT = "application/json, text/event-stream"
KEPT_HEADERS = ("content-type", "mcp-session-id", "content-encoding")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen) -> None:
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server exited early: {proc.args}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"server did not listen on {port}: {proc.args}")


def sse_events(text: str):
    """A deliberately simple SSE reading (the reference the Rust parser is checked against)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    for block in text.split("\n\n"):
        data, ev_id = [], None
        for line in block.split("\n"):
            if line.startswith(":") or not line:
                continue
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "data":
                data.append(value)
            elif field == "id":
                ev_id = value
        # An event without data (the priming event some servers send) carries no message.
        if "".join(data).strip():
            yield ev_id, "\n".join(data)


def messages_of(content_type: str, body: str):
    if not body.strip():
        return []
    if content_type.startswith("text/event-stream"):
        out = []
        for _, data in sse_events(body):
            v = json.loads(data)
            out.extend(v if isinstance(v, list) else [v])
        return out
    v = json.loads(body)
    return v if isinstance(v, list) else [v]


def expect(request_body: str, status: int, content_type: str, body: str):
    """What the exchange means, read independently of the filter."""
    req = json.loads(request_body) if request_body else []
    reqs = req if isinstance(req, list) else [req]
    msgs = messages_of(content_type, body) if status < 300 else []
    replies = {json.dumps(m.get("id")): m for m in msgs if "method" not in m and "id" in m}
    calls = []
    for r in reqs:
        if not isinstance(r, dict) or "method" not in r or "id" not in r:
            continue
        reply = replies.get(json.dumps(r["id"]))
        if status >= 500:
            st = "upstream_error"
        elif status >= 400:
            st = "error"
        elif reply is None:
            st = "aborted"
        elif "error" in reply or (reply.get("result") or {}).get("isError") is True:
            st = "error"
        else:
            st = "ok"
        calls.append({"id": r["id"], "method": r["method"], "status": st})
    return {
        "calls": calls,
        "notifications": sum(1 for m in msgs if "method" in m and "id" not in m),
        "server_requests": sum(1 for m in msgs if "method" in m and "id" in m),
    }


class Recorder:
    def __init__(self, base: str, source: str):
        self.base = base
        self.source = source
        self.session = None
        self.protocol = None
        self.exchanges = []
        self.client = httpx.Client(timeout=30)
        self.on_server_request = None

    def headers(self):
        h = {"content-type": "application/json", "accept": ACCEPT}
        if self.session:
            h["mcp-session-id"] = self.session
        if self.protocol:
            h["mcp-protocol-version"] = self.protocol
        return h

    def send(self, name: str, message, method: str = "POST", extra=None):
        body = json.dumps(message, separators=(",", ":")) if message is not None else ""
        headers = self.headers()
        headers.update(extra or {})
        if method != "POST":
            headers.pop("content-type", None)
        chunks = []
        with self.client.stream(method, self.base, content=body or None, headers=headers) as resp:
            ct = resp.headers.get("content-type", "")
            for chunk in resp.iter_raw():
                chunks.append(chunk)
                # Answer server-to-client requests as a client would, mid-stream.
                if self.on_server_request and ct.startswith("text/event-stream"):
                    for _, data in sse_events(b"".join(chunks).decode("utf-8", "replace")):
                        try:
                            m = json.loads(data)
                        except ValueError:
                            continue
                        if isinstance(m, dict) and "method" in m and "id" in m:
                            key = json.dumps(m["id"])
                            if key not in self.answered:
                                self.answered.add(key)
                                answer = self.on_server_request(m)
                                threading.Thread(
                                    target=self.send, args=(f"{name} (client answers {m['method']})", answer)
                                ).start()
            status = resp.status_code
            kept = {k: resp.headers[k] for k in KEPT_HEADERS if k in resp.headers}
        raw = b"".join(chunks)
        text = raw.decode("utf-8")
        if "mcp-session-id" in kept and self.session is None:
            self.session = kept["mcp-session-id"]
        self.exchanges.append(
            {
                "name": name,
                "request": {"method": method, "headers": {k: v for k, v in headers.items() if k != "accept"}, "body": body},
                "response": {"status": status, "headers": kept, "body": text},
                "expect": expect(body, status, kept.get("content-type", ""), text),
            }
        )
        return status, kept, text

    def initialize(self, version: str, capabilities=None):
        status, headers, text = self.send(
            "initialize",
            {
                "jsonrpc": "2.0",
                "id": 0,
                "method": "initialize",
                "params": {
                    "protocolVersion": version,
                    "capabilities": capabilities or {},
                    "clientInfo": {"name": "mcptrail-fixtures", "version": "1"},
                },
            },
        )
        for m in messages_of(headers.get("content-type", ""), text):
            if m.get("id") == 0 and "result" in m:
                self.protocol = m["result"].get("protocolVersion")
        self.send("notifications/initialized", {"jsonrpc": "2.0", "method": "notifications/initialized"})

    def call(self, name: str, id_, method: str, params=None):
        m = {"jsonrpc": "2.0", "id": id_, "method": method}
        if params is not None:
            m["params"] = params
        return self.send(name, m)

    def write(self, file: str):
        OUT.mkdir(parents=True, exist_ok=True)
        doc = {"source": self.source, "exchanges": self.exchanges}
        (OUT / file).write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
        print(f"wrote {OUT / file} ({len(self.exchanges)} exchanges)")


def first(items, key):
    return items[0][key] if items else None


def everything(port: int) -> None:
    pkg = TOOLS / "node/node_modules/@modelcontextprotocol/server-everything"
    version = json.loads((pkg / "package.json").read_text())["version"]
    proc = subprocess.Popen(
        ["node", str(pkg / "dist/index.js"), "streamableHttp"],
        env={**os.environ, "PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_port(port, proc)
        r = Recorder(f"http://127.0.0.1:{port}/mcp", f"@modelcontextprotocol/server-everything@{version} (streamableHttp)")
        r.answered = set()
        r.on_server_request = lambda m: {
            "jsonrpc": "2.0",
            "id": m["id"],
            "result": {"role": "assistant", "content": {"type": "text", "text": "a sampled answer"}, "model": "fixture-model"}
            if m["method"] == "sampling/createMessage"
            else {"action": "decline"},
        }
        r.initialize("2025-06-18", {"sampling": {}, "elicitation": {}})
        _, h, text = r.call("tools/list", 1, "tools/list")
        r.call("tools/call echo", 2, "tools/call", {"name": "echo", "arguments": {"message": "hello fixtures"}})
        r.call("tools/call get-sum", 3, "tools/call", {"name": "get-sum", "arguments": {"a": 2, "b": 40}})
        r.call(
            "tools/call long-running with progress",
            4,
            "tools/call",
            {"name": "trigger-long-running-operation", "arguments": {"duration": 1, "steps": 3}, "_meta": {"progressToken": "p-4"}},
        )
        r.call("tools/call with sampling", 5, "tools/call", {"name": "trigger-sampling-request", "arguments": {"prompt": "hi", "maxTokens": 10}})
        r.call("tools/call unknown tool", 6, "tools/call", {"name": "no-such-tool", "arguments": {}})
        r.call("tools/call bad arguments", 7, "tools/call", {"name": "get-sum", "arguments": {"a": "x"}})
        _, h, text = r.call("prompts/list", 8, "prompts/list")
        prompts = messages_of(h.get("content-type", ""), text)[0]["result"]["prompts"]
        simple = next((p["name"] for p in prompts if not p.get("arguments")), first(prompts, "name"))
        r.call("prompts/get", 9, "prompts/get", {"name": simple, "arguments": {}})
        _, h, text = r.call("resources/list", 10, "resources/list")
        resources = messages_of(h.get("content-type", ""), text)[0]["result"]["resources"]
        r.call("resources/read", 11, "resources/read", {"uri": first(resources, "uri")})
        r.call("unknown method", 12, "no/such/method")
        r.call("ping", 13, "ping")
        r.send("batch (not allowed since 2025-06-18)", [{"jsonrpc": "2.0", "id": 14, "method": "ping"}, {"jsonrpc": "2.0", "id": 15, "method": "ping"}])
        body = '{"jsonrpc":"2.0","id":16,'
        with r.client.stream("POST", r.base, content=body, headers=r.headers()) as resp:
            text = resp.read().decode()
            r.exchanges.append(
                {
                    "name": "malformed JSON",
                    "request": {"method": "POST", "headers": {}, "body": body},
                    "response": {"status": resp.status_code, "headers": {k: resp.headers[k] for k in KEPT_HEADERS if k in resp.headers}, "body": text},
                    "expect": {"calls": [], "notifications": 0, "server_requests": 0, "decode_error": True},
                }
            )
        r.send("DELETE session", None, method="DELETE")
        r.write("server-everything.json")
    finally:
        proc.terminate()
        proc.wait()


def python_sdk(port: int, mode: str) -> None:
    flags = {"sse": [], "json": ["--json"], "stateless": ["--json", "--stateless"]}[mode]
    proc = subprocess.Popen(
        [str(TOOLS / "venv/bin/python"), str(ROOT / "integration/py/fixture_server.py"), "--port", str(port), *flags],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    import mcp

    version = getattr(mcp, "__version__", None) or subprocess.run(
        [str(TOOLS / "venv/bin/pip"), "show", "mcp"], capture_output=True, text=True
    ).stdout.split("Version: ")[1].split()[0]
    try:
        wait_port(port, proc)
        r = Recorder(f"http://127.0.0.1:{port}/mcp", f"mcp (Python SDK) {version}, MCPServer, mode {mode}")
        r.initialize("2025-06-18")
        r.call("tools/list", 1, "tools/list")
        r.call("tools/call echo", 2, "tools/call", {"name": "echo", "arguments": {"text": "caf\u00e9 \u2615 \\u0040 \"quoted\""}})
        r.call("tools/call fail (isError)", 3, "tools/call", {"name": "fail", "arguments": {"reason": "testing"}})
        r.call("tools/call progress", 4, "tools/call", {"name": "progress", "arguments": {"steps": 3}, "_meta": {"progressToken": 44}})
        r.call("prompts/get", 5, "prompts/get", {"name": "greet", "arguments": {"name": "alice"}})
        r.call("resources/read", 6, "resources/read", {"uri": "note://hello"})
        r.call("completion/complete", 7, "completion/complete", {"ref": {"type": "ref/prompt", "name": "greet"}, "argument": {"name": "name", "value": "al"}})
        r.call("unknown tool", 8, "tools/call", {"name": "nope", "arguments": {}})
        if mode != "stateless":
            r.send("DELETE session", None, method="DELETE")
        r.write(f"python-sdk-{mode}.json")
    finally:
        proc.terminate()
        proc.wait()


def rmcp(port: int, mode: str) -> None:
    binary = ROOT / "target/debug/demo-mcp-server"
    if not binary.exists():
        subprocess.run(["cargo", "build", "-q", "-p", "mcptrail-integration", "--bin", "demo-mcp-server"], check=True, cwd=ROOT)
    flags = {"sse": [], "json": ["--json"]}[mode]
    proc = subprocess.Popen([str(binary), "--listen", f"127.0.0.1:{port}", *flags], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_port(port, proc)
        r = Recorder(f"http://127.0.0.1:{port}/mcp", f"rmcp demo server (integration/src/demo.rs), mode {mode}")
        r.initialize("2025-06-18")
        r.call("tools/list", 1, "tools/list")
        r.call("tools/call echo", 2, "tools/call", {"name": "echo", "arguments": {"text": "hi"}})
        r.call("tools/call fail", 3, "tools/call", {"name": "fail", "arguments": {}})
        r.call("tools/call divide by zero", 4, "tools/call", {"name": "divide", "arguments": {"a": 1, "b": 0}})
        r.call("tools/call progress", 5, "tools/call", {"name": "progress", "arguments": {"steps": 3}, "_meta": {"progressToken": 5}})
        r.send("DELETE session", None, method="DELETE")
        r.write(f"rmcp-{mode}.json")
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    everything(free_port())
    for m in ("sse", "json", "stateless"):
        python_sdk(free_port(), m)
    for m in ("sse", "json"):
        rmcp(free_port(), m)
