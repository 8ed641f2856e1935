#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (fuzz/corpus/TARGET/) from the recorded real MCP
exchanges (filter/testdata/exchanges/), the checked-in Envoy configurations, and a few
hand-made edge cases. Standard library only; deterministic; re-run after `make fixtures`.

  sse      every recorded text/event-stream answer (after the target's 2 control bytes), and
           line-ending / BOM / comment / retry edge cases
  jsonrpc  every recorded request body, JSON answer, and SSE event's data
  config   the plugin configurations of envoy/*.yaml and envoy/istio/envoyfilter.yaml (the
           `value: >-` blocks), and variants
  jwt      real HS256 tokens (valid, expired, wrong audience, alg none, tampered), raw mode
  jwks     JWK Sets with the test keys and with keys that must be refused, raw mode
  glue     (not written here: its input is `arbitrary`-structured and it replays the
           recorded exchanges itself; its committed seeds are a minimised fuzzing corpus)
"""

import base64
import glob
import hashlib
import hmac
import json
import os
import re

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# The fuzz crate's test keys (fuzz/src/lib.rs): RSA from filter/testdata/rsa-test-key.pem and
# the Ed25519 key of seed [9; 32], as JWK members.
RSA_N = (
    "qgk4l-Iq2UhtNxc0XQCnqrhebAhLNG04ArOzJdifHDqPESuPvNG5aCchtWsEV-7cR-4OtlDqhRxM-Mj3Y7C6Apnukl"
    "XUTyywpgYg956RMUMsORd0e7v7ZH60I0ucgmBRJtbGm5ujpaEWky8dGWMG4Grk1TLbsM4ztKY4IwIEwUBcMCjcrdcJ"
    "axgMKMXJoKeEq6BxQLnvfOvHAZf-m-vU6hZUiYskUVJPXOVFAPqbI4UY1tgXjtDOMsVPwHWUYZP4_IGcGWILWS5e2w"
    "xK7Dbz9_lri4OMzT9SVQGYk0UgoQPac9ikL7NYWVuT_m5WUfL4ptL0PThCU6RdW9YbmKnNPQ"
)
RSA_E = "AQAB"
ED_X = "_RckOFqgx1tk-3jNYC-h2ZH96_drE8WO1wLqyDXp9hg"
ISS = "https://idp.example.com"
AUD = "https://mcp.example.com/mcp"
NOW = 1_795_514_400
SECRET = b"a-shared-secret-of-32-bytes-long!"


def write(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def exchanges():
    for path in sorted(glob.glob(os.path.join(ROOT, "filter/testdata/exchanges/*.json"))):
        with open(path) as f:
            for ex in json.load(f)["exchanges"]:
                yield ex


def b64u(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256(header, claims, secret=SECRET):
    h = b64u(json.dumps(header, separators=(",", ":")).encode())
    c = b64u(json.dumps(claims, separators=(",", ":")).encode())
    sig = hmac.new(secret, f"{h}.{c}".encode(), hashlib.sha256).digest()
    return f"{h}.{c}.{b64u(sig)}"


def sse_and_jsonrpc():
    for ex in exchanges():
        req = ex["request"]["body"]
        if req:
            write("jsonrpc", req)
        resp = ex["response"]
        ctype = resp["headers"].get("content-type", "")
        body = resp["body"]
        if not body:
            continue
        if ctype.startswith("text/event-stream"):
            # Control bytes: an even first byte keeps the large bound, an odd one a small one.
            write("sse", b"\x00\x2a" + body.encode())
            write("sse", b"\x41\x07" + body.encode())
            for line in re.split(r"\r\n|\r|\n", body):
                if line.startswith("data:") and line[5:].strip():
                    write("jsonrpc", line[5:].lstrip(" "))
        elif ctype.startswith("application/json"):
            write("jsonrpc", body)
    edge = [
        "data: a\r\n\r\ndata: b\rdata: c\r\r",
        "\ufeffid: 1\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n",
        ": ping\n\nretry: 3000\nretry: x\nid\nid: a\x00b\ndata\ndata:\ndata:  two\n\n",
        "event:\ndata: x\n\nevent: custom\ndata: y\n\n",
        "data: " + "x" * 300 + "\ndata: {\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{}}\n\n",
        "data: \xff\xfe\n\n",
        "data: incomplete",
    ]
    for e in edge:
        raw = e.encode("utf-8", "surrogateescape") if "\xff" not in e else e.encode("latin-1")
        write("sse", b"\x00\x01" + raw)
        write("sse", b"\x09\x05" + raw)
    for e in [
        '{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}',
        '[{"jsonrpc":"2.0","id":1,"result":{"isError":true}},{"jsonrpc":"2.0","method":"m"},7]',
        '{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"x"}}',
        '{"jsonrpc":"2.0","id":1,"result":[1,2]}',
        '{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-06-18"}}',
        "[]",
    ]:
        write("jsonrpc", e)


def configs():
    for path in sorted(glob.glob(os.path.join(ROOT, "envoy/*.yaml")) + glob.glob(os.path.join(ROOT, "envoy/istio/*.yaml"))):
        text = open(path).read()
        # The JSON object following a `value: >-` (Envoy) or a `pluginConfig:`-style block.
        for m in re.finditer(r"value: >-\n((?:[ \t]+.*\n)+)", text):
            block = " ".join(l.strip() for l in m.group(1).splitlines())
            try:
                # The JSON object first; the indented YAML after it is not part of it.
                obj, _ = json.JSONDecoder().raw_decode(block)
                write("config", json.dumps(obj))
            except ValueError:
                pass
    base = {"audit": {"cluster": "audit_collector"}}
    full = {
        "audit": {"cluster": "c", "authority": "collector", "path": "/v1/logs", "format": "otlp",
                  "headers": {"x-api-key": "k"}, "flush_interval_ms": 50, "batch_max_records": 10,
                  "batch_max_bytes": 4096, "timeout_ms": 100, "max_retries": 0,
                  "buffer_max_records": 20, "on_buffer_full": "reject",
                  "hmac_key": "c2VjcmV0LWtleS1mb3ItZGVtby1vbmx5"},
        "mcp": {"paths": ["/mcp", "/v2/"], "max_body_bytes": 4096, "max_sessions": 3,
                "reject_session_identity_mismatch": True, "record_notifications": True,
                "session_keys": ["c2Vzc2lvbi1rZXktZm9yLXRoZS1kZW1vLW9ubHktMzJi"],
                "unsealed_sessions": "pass"},
        "auth": {"mode": "required", "forward_identity": True, "forward_token": False,
                 "required_scopes": ["mcp"], "max_token_bytes": 4096, "cache_max_entries": 8,
                 "jwks_wait_ms": 100,
                 "resource_metadata": {"resource": AUD, "authorization_servers": [ISS]},
                 "providers": [
                     {"name": "corp", "issuer": ISS, "audiences": [AUD],
                      "jwks": {"keys": [{"kty": "RSA", "kid": "rsa", "n": RSA_N, "e": RSA_E},
                                        {"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": ED_X}]},
                      "jwks_uri": "https://idp.example.com/jwks", "jwks_cluster": "idp",
                      "jwks_refresh_s": 60, "jwks_refetch_min_s": 1, "jwks_timeout_ms": 500,
                      "algorithms": ["RS256", "EdDSA", "HS256"],
                      "shared_secret": base64.b64encode(SECRET).decode(),
                      "claims": {"subject": "sub", "groups": "realm_access.roles",
                                 "email": "email", "client_id": "azp"},
                      "leeway_s": 30}]},
        "policy": {"default": "deny", "rules": [
            {"tools": ["delete_*"], "groups": ["admins"], "action": "allow"},
            {"methods": ["tools/*", "initialize"], "action": "allow"}]},
    }
    for c in [base, full, {"audit": {"cluster": "c"}, "masking": {}}, {"audit": {"cluster": "c"}, "bogus": 1}]:
        write("config", json.dumps(c))


def jwt():
    claims = {"iss": ISS, "aud": AUD, "sub": "alice", "groups": ["eng"], "iat": NOW - 10,
              "nbf": NOW - 10, "exp": NOW + 3600, "email": "alice@example.com", "azp": "agent-1",
              "scope": "mcp read", "realm_access": {"roles": ["admins"]}}
    hs = {"alg": "HS256", "typ": "JWT"}
    tokens = [
        hs256(hs, claims),
        hs256(hs, dict(claims, exp=NOW - 100)),
        hs256(hs, dict(claims, aud=["other", AUD])),
        hs256(hs, dict(claims, aud="other")),
        hs256(dict(hs, kid="rsa"), claims),
        hs256({"alg": "HS256", "crit": ["exp"]}, claims),
        hs256(hs, claims, secret=b"wrong-secret-wrong-secret-wrong!"),
        hs256(hs, dict(claims, exp="tomorrow")),
        hs256(hs, {k: v for k, v in claims.items() if k != "exp"}),
        b64u(b'{"alg":"none"}') + "." + b64u(json.dumps(claims).encode()) + ".",
        b64u(b'{"alg":"RS256","kid":"rsa"}') + "." + b64u(json.dumps(claims).encode()) + "." + b64u(b"\x00" * 256),
        b64u(b'{"alg":"EdDSA","kid":"ed"}') + "." + b64u(json.dumps(claims).encode()) + "." + b64u(b"\x01" * 64),
        "a.b.c",
        "....",
    ]
    t = tokens[0]
    tokens.append(t[:-2] + ("A" if t[-2] != "A" else "B") + t[-1])
    for tok in tokens:
        write("jwt", b"\x00" + tok.encode())


def jwks():
    rsa = {"kty": "RSA", "kid": "rsa", "use": "sig", "alg": "RS256", "n": RSA_N, "e": RSA_E}
    ed = {"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": ED_X}
    docs = [
        {"keys": [rsa, ed]},
        {"keys": [dict(rsa, alg="ES256")]},
        {"keys": [dict(rsa, use="enc"), dict(ed, alg="EdDSA")]},
        {"keys": [{"kty": "oct", "k": b64u(SECRET)}]},
        {"keys": [{"kty": "EC", "crv": "P-256", "x": b64u(b"\x01" * 32), "y": b64u(b"\x02" * 32)}]},
        {"keys": [dict(rsa, n=RSA_N[:170])]},
        {"keys": [dict(ed, x=ED_X[:-4])]},
        {"keys": [dict(rsa, e="AQAB" * 3)]},
        {"keys": "not a list"},
        {"keys": [1, None, "x", {}]},
    ]
    for d in docs:
        write("jwks", b"\x00" + json.dumps(d).encode())
    write("jwks", b"\x00<html>502 Bad Gateway</html>")


if __name__ == "__main__":
    sse_and_jsonrpc()
    configs()
    jwt()
    jwks()
    for t in sorted(os.listdir(os.path.join(HERE, "corpus"))):
        files = os.listdir(os.path.join(HERE, "corpus", t))
        size = sum(os.path.getsize(os.path.join(HERE, "corpus", t, f)) for f in files)
        print(f"{t}: {len(files)} seeds, {size} bytes")
