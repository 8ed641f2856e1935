"""A small MCP server on the official Python SDK, for recording fixtures.

    python fixture_server.py --port 8765 [--json] [--stateless]
"""

import argparse

import uvicorn
from mcp.server.mcpserver import Context, MCPServer

server = MCPServer("python-fixture-server", version="1.0.0")


@server.tool()
def echo(text: str) -> str:
    """Echoes the text."""
    return text


@server.tool()
def fail(reason: str) -> str:
    """Always fails (a tool error, isError: true)."""
    raise ValueError(f"failed on purpose: {reason}")


@server.tool()
async def progress(steps: int, ctx: Context) -> str:
    """Reports progress, then answers."""
    for i in range(steps):
        await ctx.report_progress(i + 1, steps, f"step {i + 1}")
    return f"done in {steps} steps"


@server.prompt()
def greet(name: str) -> str:
    """A greeting prompt."""
    return f"Say hello to {name}."


@server.resource("note://{name}")
def note(name: str) -> str:
    """A note by name."""
    return f"note {name}"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--json", action="store_true")
    p.add_argument("--stateless", action="store_true")
    a = p.parse_args()
    app = server.streamable_http_app(json_response=a.json, stateless_http=a.stateless)
    uvicorn.run(app, host="127.0.0.1", port=a.port, log_level="warning")


if __name__ == "__main__":
    main()
