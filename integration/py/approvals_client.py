"""Call one tool through an MCP endpoint with the official Python SDK and print what came back.

Usage: approvals_client.py URL --token TOKEN --tool NAME [--args JSON]
Prints one JSON object: {"result": [texts]} or {"error": {"code", "message"}}, and for a
-32042 answer the URL elicitations as the SDK itself reads them
(UrlElicitationRequiredError.from_error), so a shape the SDK refuses fails here.
"""

import argparse
import asyncio
import json

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError, UrlElicitationRequiredError
from mcp_types import URL_ELICITATION_REQUIRED


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("--token", required=True)
    p.add_argument("--tool", required=True)
    p.add_argument("--args", default="{}")
    a = p.parse_args()
    headers = {"Authorization": f"Bearer {a.token}"}
    async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
        transport = streamable_http_client(a.url, http_client=http)
        async with Client(transport) as c:
            try:
                r = await c.call_tool(a.tool, json.loads(a.args))
                out = {"result": [getattr(b, "text", None) for b in r.content], "is_error": r.is_error}
            except MCPError as e:
                out = {"error": {"code": e.code, "message": e.message}}
                if e.code == URL_ELICITATION_REQUIRED:
                    parsed = UrlElicitationRequiredError.from_error(e.error)
                    out["elicitations"] = [
                        {"url": el.url, "id": el.elicitation_id, "message": el.message, "mode": el.mode}
                        for el in parsed.elicitations
                    ]
    print(json.dumps(out))


asyncio.run(main())
