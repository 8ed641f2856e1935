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


def spawn(args, port: int, cwd=None) -> subprocess.Popen:
    """A server in its own session (stopped with its process group), quiet."""
    return subprocess.Popen(
        [str(a) for a in args],
        cwd=cwd,
        env={**os.environ, "PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


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
    try:
        v = json.loads(body)
    except ValueError:
        # A subscriptions/listen answer streamed as newline-delimited JSON under
        # application/json (the conformance suite's reference server): one message a line.
        return [json.loads(line) for line in body.splitlines() if line.strip()]
    return v if isinstance(v, list) else [v]


def expect(request_body: str, status: int, content_type: str, body: str):
    """What the exchange means, read independently of the filter."""
    req = json.loads(request_body) if request_body else []
    reqs = req if isinstance(req, list) else [req]
    try:
        msgs = messages_of(content_type, body) if status < 300 else []
        undecodable = False
    except ValueError:
        # Not one JSON value (the conformance server streams newline-delimited JSON under
        # application/json on subscriptions/listen): a decode error; the HTTP outcome stands.
        msgs, undecodable = [], True
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
        elif reply is None and undecodable:
            st = "ok"
        elif reply is None:
            st = "aborted"
        elif "error" in reply or (reply.get("result") or {}).get("isError") is True:
            st = "error"
        elif (reply.get("result") or {}).get("resultType") == "input_required":
            st = "input_required"
        elif (reply.get("result") or {}).get("resultType") == "task" or "taskId" in ((reply.get("result") or {}).get("task") or {}):
            st = "task"
        else:
            st = "ok"
        call = {"id": r["id"], "method": r["method"], "status": st}
        asked = (reply or {}).get("result", {}).get("inputRequests") if isinstance((reply or {}).get("result"), dict) else None
        if isinstance(asked, dict):
            call["input_requests"] = {k: (v or {}).get("method", "unknown") for k, v in asked.items()}
        calls.append(call)
    out = {
        "calls": calls,
        "notifications": sum(1 for m in msgs if "method" in m and "id" not in m),
        "server_requests": sum(1 for m in msgs if "method" in m and "id" in m),
    }
    if undecodable:
        out["decode_error"] = True
    return out


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
    proc = spawn(["node", str(pkg / "dist/index.js"), "streamableHttp"], port)
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
    proc = spawn([str(TOOLS / "venv/bin/python"), str(ROOT / "integration/py/fixture_server.py"), "--port", str(port), *flags], port)
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


V2026 = "2026-07-28"


def meta(capabilities=None):
    return {
        "io.modelcontextprotocol/protocolVersion": V2026,
        "io.modelcontextprotocol/clientCapabilities": capabilities if capabilities is not None else {"elicitation": {"form": {}}},
        "io.modelcontextprotocol/clientInfo": {"name": "mcptrail-fixtures", "version": "1"},
    }


class Stateless(Recorder):
    """The 2026-07-28 generation: no initialize, no session; every request carries its version
    in `_meta` and the standard headers (`Mcp-Method`, `Mcp-Name`)."""

    def __init__(self, base: str, source: str):
        super().__init__(base, source)
        self.protocol = V2026

    def request(self, name: str, id_, method: str, params=None, capabilities=None, operation_of=None, headers=None):
        params = dict(params or {})
        params["_meta"] = meta(capabilities)
        extra = {"mcp-method": method}
        target = params.get("name") or params.get("uri")
        if target:
            extra["mcp-name"] = target
        extra.update(headers or {})
        status, headers, text = self.send(name, {"jsonrpc": "2.0", "id": id_, "method": method, "params": params}, extra=extra)
        if operation_of:
            self.exchanges[-1]["expect"]["operation_of"] = operation_of
        msgs = messages_of(headers.get("content-type", ""), text) if status < 300 else []
        return next((m.get("result") for m in msgs if m.get("id") == id_ and "result" in m), None)

    def rounds(self, name: str, first_id: int, params: dict, answer, capabilities=None):
        """A multi-round-trip call: retries with the answers and the state until complete."""
        result = self.request(name, first_id, "tools/call", params, capabilities)
        id_, n = first_id, 1
        while result and result.get("resultType") == "input_required" and n < 5:
            id_, n = id_ + 1, n + 1
            retry = dict(params)
            retry["inputResponses"] = {k: answer(k, v) for k, v in (result.get("inputRequests") or {}).items()}
            if "requestState" in result:
                retry["requestState"] = result["requestState"]
            result = self.request(f"{name} (round {n})", id_, "tools/call", retry, capabilities, operation_of=name)
        return id_


def listen_while(r: Stateless, name: str, id_: int, during) -> None:
    """Opens a `subscriptions/listen` stream, runs `during` once it is acknowledged, reads what
    follows for a moment, then closes it (the client ends a listen stream)."""
    params = {"notifications": {"toolsListChanged": True}, "_meta": meta({})}
    body = json.dumps({"jsonrpc": "2.0", "id": id_, "method": "subscriptions/listen", "params": params}, separators=(",", ":"))
    headers = {**r.headers(), "mcp-method": "subscriptions/listen"}
    chunks = []
    client = httpx.Client(timeout=httpx.Timeout(30, read=3))
    with client.stream("POST", r.base, content=body, headers=headers) as resp:
        kept = {k: resp.headers[k] for k in KEPT_HEADERS if k in resp.headers}
        started = False
        try:
            for chunk in resp.iter_raw():
                chunks.append(chunk)
                if not started and b"acknowledged" in b"".join(chunks):
                    started = True
                    threading.Thread(target=during).start()
                if b"list_changed" in b"".join(chunks):
                    break
        except httpx.ReadTimeout:
            pass  # nothing more came: the client ends the stream
        status = resp.status_code
    text = b"".join(chunks).decode("utf-8")
    r.exchanges.append(
        {
            "name": name,
            "request": {"method": "POST", "headers": {k: v for k, v in headers.items() if k != "accept"}, "body": body},
            "response": {"status": status, "headers": kept, "body": text},
            "expect": expect(body, status, kept.get("content-type", ""), text),
        }
    )


def python_sdk_2026(port: int) -> None:
    proc = spawn([str(TOOLS / "venv/bin/python"), str(ROOT / "integration/py/fixture_server.py"), "--port", str(port), "--json"], port)
    try:
        wait_port(port, proc)
        r = Stateless(f"http://127.0.0.1:{port}/mcp", f"mcp (Python SDK) {sdk_version()}, MCPServer, protocol {V2026}")
        r.request("server/discover", 1, "server/discover")
        r.request("tools/list", 2, "tools/list")
        r.request("tools/call echo", 3, "tools/call", {"name": "echo", "arguments": {"text": "stateless"}})

        def answer(key, req):
            if "window" in key:
                return {"action": "accept", "content": {"minutes": 5}}
            return {"action": "accept", "content": {"approve": True, "password": "hunter2"}}

        last = r.rounds("tools/call deploy (input_required)", 10, {"name": "deploy", "arguments": {"env": "prod"}}, answer)
        r.request("tools/call unknown tool", last + 1, "tools/call", {"name": "nope", "arguments": {}})
        listen_while(
            r,
            "subscriptions/listen (tools changed meanwhile)",
            30,
            lambda: Stateless(r.base, r.source).request("touch_tools", 31, "tools/call", {"name": "touch_tools", "arguments": {}}),
        )
        r.write("python-sdk-2026.json")
    finally:
        proc.terminate()
        proc.wait()


def conformance_reference(port: int) -> None:
    """The MCP conformance suite's reference server (both generations). Its code is not part
    of this repository: set MCPTRAIL_CONFORMANCE to a checkout of
    github.com/modelcontextprotocol/conformance with `npm install` run in
    examples/servers/typescript."""
    root = os.environ.get("MCPTRAIL_CONFORMANCE")
    if not root:
        print("skipping the conformance reference server (MCPTRAIL_CONFORMANCE unset); its fixture is kept as recorded")
        return
    server = Path(root) / "examples/servers/typescript"
    commit = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    proc = spawn([str(server / "node_modules/.bin/tsx"), "everything-server.ts"], port, cwd=server)
    try:
        wait_port(port, proc)
        r = Stateless(f"http://127.0.0.1:{port}/mcp", f"modelcontextprotocol/conformance reference server (examples/servers/typescript, {commit or 'unknown commit'}), protocol {V2026}")
        caps = {"elicitation": {"form": {}}, "sampling": {}, "roots": {}}
        r.request("server/discover", 1, "server/discover", capabilities=caps)
        r.request("tools/list", 2, "tools/list", capabilities=caps)

        def answer(key, req):
            method = (req or {}).get("method")
            if method == "sampling/createMessage":
                return {"role": "assistant", "content": {"type": "text", "text": "sampled"}, "model": "fixture-model"}
            if method == "roots/list":
                return {"roots": [{"uri": "file:///work", "name": "work"}]}
            return {"action": "accept", "content": {"ok": True, "confirmed": True, "name": "fixture", "username": "fixture", "password": "hunter2"}}

        next_id = 10
        for tool in (
            "test_input_required_result_elicitation",
            "test_input_required_result_sampling",
            "test_input_required_result_list_roots",
            "test_input_required_result_request_state",
            "test_input_required_result_multiple_inputs",
            "test_input_required_result_multi_round",
        ):
            next_id = r.rounds(f"tools/call {tool}", next_id, {"name": tool, "arguments": {}}, answer, caps) + 10
        r.request("tools/call with a tampered requestState", next_id, "tools/call",
                  {"name": "test_input_required_result_tampered_state", "arguments": {}, "requestState": "tampered", "inputResponses": {}}, caps)
        r.request("tools/call test_simple_text", next_id + 1, "tools/call", {"name": "test_simple_text", "arguments": {}}, caps)
        r.request("header and _meta versions disagree (-32020)", next_id + 4, "tools/call", {"name": "test_simple_text", "arguments": {}}, caps,
                  headers={"mcp-protocol-version": "2025-11-25"})
        listen_while(
            r,
            "subscriptions/listen (tools changed meanwhile)",
            next_id + 2,
            lambda: Stateless(r.base, r.source).request("test_trigger_tool_change", next_id + 3, "tools/call", {"name": "test_trigger_tool_change", "arguments": {}}, caps),
        )
        r.write("conformance-2026.json")
    finally:
        os.killpg(proc.pid, 15)
        proc.wait()


def sdk_version() -> str:
    import mcp

    return getattr(mcp, "__version__", None) or subprocess.run(
        [str(TOOLS / "venv/bin/pip"), "show", "mcp"], capture_output=True, text=True
    ).stdout.split("Version: ")[1].split()[0]


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
    python_sdk_2026(free_port())
    conformance_reference(free_port())
