"""An MCP server on the official Python SDK that proves what reached it (policy tests).

    python policy_server.py --port P --log FILE [--stateful]

Tools: `read_records` (anyone) and `delete_records` (the policy keeps it for admins). Every
request body the server received whole is appended to FILE as a JSON line
{"body": <base64>}, and every tool that ran as {"ran": <tool>, "arguments": ...}, so a test
can show that a refused call never reached the server, not only that it was answered.
"""

import argparse
import base64
import json

import uvicorn
from mcp.server.mcpserver import MCPServer

server = MCPServer("policy-test-server", version="1.0.0")
LOG = None


def note(entry: dict) -> None:
    with open(LOG, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")


@server.tool()
def read_records(table: str = "t") -> str:
    """Reads records."""
    note({"ran": "read_records", "arguments": {"table": table}})
    return f"read {table}"


@server.tool()
def delete_records(table: str = "t") -> str:
    """Deletes records (admins only, by policy)."""
    note({"ran": "delete_records", "arguments": {"table": table}})
    return f"deleted {table}"


class BodyLog:
    """ASGI middleware: logs each request body that arrived whole (more_body false)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        chunks = []

        async def logged_receive():
            msg = await receive()
            if msg["type"] == "http.request":
                chunks.append(msg.get("body", b""))
                if not msg.get("more_body", False):
                    note({"body": base64.b64encode(b"".join(chunks)).decode()})
            return msg

        return await self.app(scope, logged_receive, send)


def main() -> None:
    global LOG
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--stateful", action="store_true", help="sessions (Mcp-Session-Id)")
    a = p.parse_args()
    LOG = a.log
    app = server.streamable_http_app(json_response=True, stateless_http=not a.stateful)
    uvicorn.run(BodyLog(app), host="127.0.0.1", port=a.port, log_level="warning")


if __name__ == "__main__":
    main()
