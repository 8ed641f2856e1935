"""A small MCP server on the official Python SDK, for recording fixtures.

    python fixture_server.py --port 8765 [--json] [--stateless]
"""

import argparse
from typing import Annotated

import uvicorn
from mcp.server.mcpserver import Context, Elicit, MCPServer, Resolve
from pydantic import BaseModel

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


class Approval(BaseModel):
    approve: bool
    password: str


class Window(BaseModel):
    minutes: int


def ask_approval() -> Elicit[Approval]:
    return Elicit("Approve this deployment?", Approval)


def ask_window(approval: Annotated[Approval, Resolve(ask_approval)]) -> Elicit[Window]:
    # Asked only once the approval is in: a second round trip (2026-07-28 multi-round).
    return Elicit("How long may the deployment take?", Window)


@server.tool()
def deploy(
    env: str,
    approval: Annotated[Approval, Resolve(ask_approval)],
    window: Annotated[Window, Resolve(ask_window)],
) -> str:
    """Deploys after an approval and a time window, asked of the client (input_required)."""
    return f"deployed to {env} within {window.minutes} min" if approval.approve else "not approved"


@server.tool()
async def touch_tools(ctx: Context) -> str:
    """Announces a change of the tool list (delivered on subscriptions/listen streams)."""
    await ctx.notify_tools_changed()
    return "announced"


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
