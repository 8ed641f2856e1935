"""Drive an MCP endpoint with the official Python SDK (`mcp` on PyPI) and print what it saw.

Usage: client.py URL [--mode legacy|auto] [--token TOKEN]
Prints one JSON object: the tool names, and the echo and failure results.
"""

import argparse
import asyncio
import json

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("--mode", default="auto")
    p.add_argument("--token")
    a = p.parse_args()
    headers = {"Authorization": f"Bearer {a.token}"} if a.token else {}
    async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
        transport = streamable_http_client(a.url, http_client=http)
        async with Client(transport, mode=a.mode) as c:
            tools = await c.list_tools()
            echo = await c.call_tool("echo", {"text": "from python"})
            fail = await c.call_tool("fail", {})
            print(
                json.dumps(
                    {
                        "tools": sorted(t.name for t in tools.tools),
                        "echo": [getattr(b, "text", None) for b in echo.content],
                        "fail_is_error": fail.is_error,
                    }
                )
            )


asyncio.run(main())
