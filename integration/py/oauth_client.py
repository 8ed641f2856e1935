"""Sign in to an MCP endpoint with the official Python SDK's OAuth client provider, no token
given, and call a tool; print what happened as one JSON object.

Usage: oauth_client.py URL [--user sam] [--text TEXT]

The SDK does everything a stock client does: it meets the 401, reads the resource metadata the
`WWW-Authenticate` header names, discovers the authorization server, registers itself
dynamically (loopback redirect URI), sends the user to the authorization URL, exchanges the code
(PKCE, `resource`) and retries with the token. The one thing a person would do, signing in, is
done here over HTTP as a browser would: follow redirects to the sign-in form, post `login` and
`password`, post the consent form, and stop at the redirect to the loopback callback, whose
`code`, `state` and `iss` the callback handler returns.
"""

import argparse
import asyncio
import json
import re
import socket
from html import unescape
from urllib.parse import parse_qs, urljoin, urlparse

import httpx2
from mcp import Client
from mcp.client.auth import OAuthClientProvider, TokenStorage
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import (
    AuthorizationCodeResult,
    OAuthClientInformationFull,
    OAuthClientMetadata,
    OAuthToken,
)


class MemoryStorage(TokenStorage):
    """Tokens and the registration, kept for this run only."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


def form_action(html: str, marker: str) -> str | None:
    """The `action` of the page's form that contains `marker`."""
    for form in re.findall(r"<form\b(.*?)</form>", html, re.S):
        if marker in form:
            m = re.search(r'action="([^"]*)"', form)
            if m:
                return unescape(m.group(1))
    return None


class Browser:
    """Drives the sign-in pages like a person in a browser would (cookies kept)."""

    def __init__(self, user: str, redirect_uri: str) -> None:
        self.user = user
        self.redirect_uri = redirect_uri
        self.result: AuthorizationCodeResult | None = None
        self.steps: list[str] = []

    async def sign_in(self, authorization_url: str) -> None:
        async with httpx2.AsyncClient(follow_redirects=False, timeout=15) as http:
            url = authorization_url
            self.steps.append("authorize")
            r = await http.get(url)
            for _ in range(20):
                if r.is_redirect:
                    url = urljoin(url, r.headers["location"])
                    if url.startswith(self.redirect_uri):
                        q = parse_qs(urlparse(url).query)
                        if "error" in q:
                            raise RuntimeError(f"authorization refused: {url}")
                        self.result = AuthorizationCodeResult(
                            code=q["code"][0],
                            state=q.get("state", [None])[0],
                            iss=q.get("iss", [None])[0],
                        )
                        self.steps.append("callback")
                        return
                    r = await http.get(url)
                    continue
                html = r.text
                if r.status_code != 200:
                    raise RuntimeError(f"sign-in stopped at {url} ({r.status_code}):\n{html}")
                if (action := form_action(html, 'name="password"')) is not None:
                    if "login" in self.steps:
                        raise RuntimeError(f"the sign-in form came back:\n{html}")
                    self.steps.append("login")
                    form = {"login": self.user, "password": "any"}
                elif (action := form_action(html, 'value="allow"')) is not None:
                    self.steps.append("consent")
                    form = {"decision": "allow"}
                else:
                    raise RuntimeError(f"no form to answer at {url}:\n{html}")
                url = urljoin(url, action)
                r = await http.post(url, data=form)
            raise RuntimeError("too many redirects")

    async def callback(self) -> AuthorizationCodeResult:
        if self.result is None:
            raise RuntimeError("the sign-in did not reach the callback")
        return self.result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("--user", default="sam")
    p.add_argument("--text", default="signed in from python")
    a = p.parse_args()

    # Nothing listens there: the browser above stops at the redirect, as a client's local
    # callback server would take it.
    redirect_uri = f"http://127.0.0.1:{free_port()}/callback"
    storage = MemoryStorage()
    browser = Browser(a.user, redirect_uri)
    auth = OAuthClientProvider(
        server_url=a.url,
        client_metadata=OAuthClientMetadata(
            client_name="mcptrail python sdk test",
            redirect_uris=[redirect_uri],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",
        ),
        storage=storage,
        redirect_handler=browser.sign_in,
        callback_handler=browser.callback,
    )
    async with httpx2.AsyncClient(auth=auth, timeout=30) as http:
        async with Client(streamable_http_client(a.url, http_client=http)) as c:
            tools = await c.list_tools()
            echo = await c.call_tool("echo", {"text": a.text})
    tokens = storage.tokens
    info = storage.client_info
    print(
        json.dumps(
            {
                "tools": sorted(t.name for t in tools.tools),
                "echo": [getattr(b, "text", None) for b in echo.content],
                "client_id": info.client_id if info else None,
                "redirect_uri": redirect_uri,
                "steps": browser.steps,
                "scope": tokens.scope if tokens else None,
                "access_token": tokens.access_token if tokens else None,
                "refresh_token": tokens.refresh_token if tokens else None,
            }
        )
    )


asyncio.run(main())
