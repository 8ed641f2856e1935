"""The official Python SDK client (`mcp` on PyPI) at protocol 2026-07-28 against a multi-round
tool, each request sent to the next of several gateway URLs on a fresh connection (so the legs
of one operation land on different replicas and workers). Prints one JSON object.

Usage: operations_client.py --token TOKEN URL [URL ...]
"""

import argparse
import asyncio
import itertools
import json

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import ElicitResult


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--token", required=True)
    p.add_argument("urls", nargs="+")
    a = p.parse_args()
    targets = itertools.cycle(httpx2.URL(u) for u in a.urls)
    legs = []

    async def spread(request: httpx2.Request) -> None:
        # Every request to the next replica: what a load balancer in front of them may do.
        t = next(targets)
        request.url = request.url.copy_with(host=t.host, port=t.port)
        request.headers["host"] = f"{t.host}:{t.port}"
        legs.append(t.port)

    async def elicit(context, params) -> ElicitResult:
        if "How long" in params.message:
            return ElicitResult(action="accept", content={"minutes": 5})
        return ElicitResult(action="accept", content={"approve": True, "password": "hunter2"})

    http = httpx2.AsyncClient(
        headers={"Authorization": f"Bearer {a.token}"},
        timeout=30,
        limits=httpx2.Limits(max_keepalive_connections=0),
        event_hooks={"request": [spread]},
    )
    async with http:
        transport = streamable_http_client(a.urls[0], http_client=http)
        async with Client(transport, mode="auto", elicitation_callback=elicit) as c:
            result = await c.call_tool("deploy", {"env": "prod"})
            echo = await c.call_tool("echo", {"text": "after deploy"})
    print(
        json.dumps(
            {
                "protocol": "2026-07-28",
                "deploy": [getattr(b, "text", None) for b in result.content],
                "echo": [getattr(b, "text", None) for b in echo.content],
                "ports": legs,
            }
        )
    )


asyncio.run(main())
