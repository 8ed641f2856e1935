// Sign in to an MCP endpoint with the official TypeScript SDK's OAuth support, no token given,
// and call a tool; print what happened as one JSON object.
//
// Usage: node oauth_client.mjs URL [--user alice] [--text TEXT] [--sdk DIR]
//
// DIR holds node_modules/@modelcontextprotocol/sdk (default: $MCPTRAIL_TS_SDK, or
// .tools/tsclient, which `make setup` fills with the pinned SDK).
//
// The SDK does what a stock client does: meets the 401, reads the resource metadata the
// `WWW-Authenticate` header names, discovers the authorization server, registers (RFC 7591,
// loopback redirect URI), and hands the authorization URL to `redirectToAuthorization`. There,
// the one thing a person would do, signing in, is done over HTTP as a browser would (manual
// redirects, a cookie jar): the sign-in form gets `login` and `password`, the consent form
// Allow, and the redirect to the loopback callback is not followed but read for `code` and
// `state`. Then `transport.finishAuth(code)` exchanges it (PKCE, `resource`), and a new
// connection calls a tool with the token.

import { createServer } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
const url = args[0];
if (!url || url.startsWith('--')) {
  console.error('usage: oauth_client.mjs URL [--user alice] [--text TEXT] [--sdk DIR]');
  process.exit(2);
}
const user = opt('--user', 'alice');
const text = opt('--text', 'signed in from typescript');
const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const sdkDir = opt('--sdk', process.env.MCPTRAIL_TS_SDK ?? join(repo, '.tools/tsclient'));
const sdk = (p) => import(pathToFileURL(join(sdkDir, 'node_modules/@modelcontextprotocol/sdk/dist/esm', p)).href);

const { Client } = await sdk('client/index.js');
const { StreamableHTTPClientTransport } = await sdk('client/streamableHttp.js');
const { UnauthorizedError } = await sdk('client/auth.js');
const sdkVersion = (await import(pathToFileURL(join(sdkDir, 'node_modules/@modelcontextprotocol/sdk/package.json')).href,
  { with: { type: 'json' } })).default.version;

const freePort = () => new Promise((ok, fail) => {
  const s = createServer();
  s.on('error', fail);
  s.listen(0, '127.0.0.1', () => {
    const { port } = s.address();
    s.close(() => ok(port));
  });
});

// Nothing listens there: the browser below stops at the redirect, as a client's local
// callback server would take it.
const redirectUri = `http://127.0.0.1:${await freePort()}/callback`;

/** The `action` of the page's form containing `marker`. */
function formAction(html, marker) {
  for (const m of html.matchAll(/<form\b([\s\S]*?)<\/form>/g)) {
    if (m[1].includes(marker)) {
      const a = /action="([^"]*)"/.exec(m[1]);
      if (a) return a[1].replaceAll('&amp;', '&');
    }
  }
  return undefined;
}

/** A browser, as far as the sign-in pages need one: cookies kept, redirects by hand. */
class Browser {
  constructor() {
    this.jar = new Map(); // origin -> Map(name -> value)
    this.steps = [];
  }

  async request(target, init = {}) {
    const origin = new URL(target).origin;
    const cookies = this.jar.get(origin) ?? new Map();
    const headers = { ...(init.headers ?? {}) };
    if (cookies.size) headers.cookie = [...cookies].map(([k, v]) => `${k}=${v}`).join('; ');
    const r = await fetch(target, { ...init, headers, redirect: 'manual' });
    for (const c of r.headers.getSetCookie()) {
      const [pair, ...attrs] = c.split(';');
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      const expired = attrs.some((a) => /^\s*max-age=0\s*$/i.test(a)) || value === '';
      if (expired) cookies.delete(name); else cookies.set(name, value);
    }
    this.jar.set(origin, cookies);
    return r;
  }

  /** Follows `authorizationUrl` through sign-in and consent to the callback redirect. */
  async signIn(authorizationUrl, login) {
    let at = authorizationUrl.toString();
    this.steps.push('authorize');
    let r = await this.request(at);
    for (let i = 0; i < 20; i += 1) {
      if (r.status >= 300 && r.status < 400) {
        at = new URL(r.headers.get('location'), at).toString();
        if (at.startsWith(redirectUri)) {
          const q = new URL(at).searchParams;
          if (q.get('error')) throw new Error(`authorization refused: ${at}`);
          this.steps.push('callback');
          return { code: q.get('code'), state: q.get('state'), iss: q.get('iss') };
        }
        r = await this.request(at);
        continue;
      }
      const html = await r.text();
      if (r.status !== 200) throw new Error(`sign-in stopped at ${at} (${r.status}):\n${html}`);
      let action;
      let form;
      if ((action = formAction(html, 'name="password"')) !== undefined) {
        if (this.steps.includes('login')) throw new Error(`the sign-in form came back:\n${html}`);
        this.steps.push('login');
        form = { login, password: 'any' };
      } else if ((action = formAction(html, 'value="allow"')) !== undefined) {
        this.steps.push('consent');
        form = { decision: 'allow' };
      } else {
        throw new Error(`no form to answer at ${at}:\n${html}`);
      }
      at = new URL(action, at).toString();
      r = await this.request(at, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams(form).toString(),
      });
    }
    throw new Error('too many redirects');
  }
}

/** An OAuthClientProvider keeping everything in memory for this run. */
class MemoryProvider {
  constructor(browser, login) {
    this.browser = browser;
    this.login = login;
    this.stateValue = crypto.randomUUID();
    this.client = undefined;
    this.saved = undefined;
    this.verifier = undefined;
    this.callback = undefined;
  }

  get redirectUrl() { return redirectUri; }

  get clientMetadata() {
    return {
      client_name: 'mcptrail typescript sdk test',
      redirect_uris: [redirectUri],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    };
  }

  state() { return this.stateValue; }

  clientInformation() { return this.client; }

  saveClientInformation(info) { this.client = info; }

  tokens() { return this.saved; }

  saveTokens(tokens) { this.saved = tokens; }

  async redirectToAuthorization(authorizationUrl) {
    this.authorizationUrl = authorizationUrl.toString();
    this.callback = await this.browser.signIn(authorizationUrl, this.login);
  }

  saveCodeVerifier(v) { this.verifier = v; }

  codeVerifier() {
    if (!this.verifier) throw new Error('no code verifier saved');
    return this.verifier;
  }
}

const browser = new Browser();
const provider = new MemoryProvider(browser, user);
const transportFor = () => new StreamableHTTPClientTransport(new URL(url), { authProvider: provider });
const newClient = () => new Client({ name: 'mcptrail-ts-oauth-test', version: '0.1.0' });

let first401 = false;
let client = newClient();
const transport = transportFor();
try {
  await client.connect(transport);
} catch (err) {
  if (!(err instanceof UnauthorizedError)) throw err;
  first401 = true;
  const cb = provider.callback;
  if (!cb?.code) throw new Error(`no authorization code after the redirect: ${err.message}`);
  if (cb.state !== provider.stateValue) throw new Error(`state mismatch: ${cb.state}`);
  // The transport that met the 401 (it holds the resource metadata URL) exchanges the code;
  // then a new connection, as the SDK's examples do.
  await transport.finishAuth(cb.code);
  client = newClient();
  await client.connect(transportFor());
}
const tools = await client.listTools();
const echo = await client.callTool({ name: 'echo', arguments: { text } });
await client.close();

const authz = new URL(provider.authorizationUrl ?? 'http://invalid/');
console.log(JSON.stringify({
  sdk_version: sdkVersion,
  signed_in_after_401: first401,
  tools: tools.tools.map((t) => t.name).sort(),
  echo: echo.content.map((c) => c.text ?? null),
  client_id: provider.client?.client_id ?? null,
  redirect_uri: redirectUri,
  steps: browser.steps,
  authorization_request: {
    resource: authz.searchParams.get('resource'),
    code_challenge_method: authz.searchParams.get('code_challenge_method'),
    scope: authz.searchParams.get('scope'),
  },
  access_token: provider.saved?.access_token ?? null,
  refresh_token: provider.saved?.refresh_token ?? null,
}));
