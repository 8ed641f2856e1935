// mcptrail's development authorization server: OAuth 2.1 / OpenID Connect from the
// OpenID-certified `oidc-provider` (panva), configured for the MCP authorization spec
// (2025-11-25). Development settings only: in-memory storage, cookie keys made at each
// start, demo users who sign in with any password, open registration for loopback clients.
// README.md in this directory lists the endpoints, users, clients and lifetimes.
//
//   node server.mjs [--port 9400] [--key ../.run/issuer-key.pem] [--issuer URL]
//                   [--approvals-redirect URL] [--resources '*' | URL,URL...]
//                   [--cimd-loopback-ca PEM]
// Each flag has an environment variable too (AUTHZ_PORT, AUTHZ_KEY, AUTHZ_ISSUER,
// AUTHZ_APPROVALS_REDIRECT, AUTHZ_RESOURCES, AUTHZ_CIMD_LOOPBACK_CA); flags win.

import {
  createHash, createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes,
} from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import Provider, { errors, interactionPolicy } from 'oidc-provider';

const here = dirname(fileURLToPath(import.meta.url));
const log = (...parts) => console.log('authz:', ...parts);

// --- Settings ---------------------------------------------------------------------------

const { values: args } = parseArgs({
  options: {
    port: { type: 'string' },
    key: { type: 'string' },
    issuer: { type: 'string' },
    'approvals-redirect': { type: 'string' },
    resources: { type: 'string' },
    'cimd-loopback-ca': { type: 'string' },
  },
});
const env = process.env;
const port = Number(args.port ?? env.AUTHZ_PORT ?? 9400);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  console.error(`authz: bad port ${args.port ?? env.AUTHZ_PORT}`);
  process.exit(2);
}
const keyPath = resolve(args.key ?? env.AUTHZ_KEY ?? join(here, '..', '.run', 'issuer-key.pem'));
// The same spelling as `mcptrail token`'s default (`http://127.0.0.1:9400`, no trailing slash),
// so its tokens and ours carry the same `iss`.
const issuer = (args.issuer ?? env.AUTHZ_ISSUER ?? `http://127.0.0.1:${port}`).replace(/\/+$/, '');
const approvalsRedirect = args['approvals-redirect'] ?? env.AUTHZ_APPROVALS_REDIRECT
  ?? 'http://127.0.0.1:8787/callback';
// Which resource indicators (RFC 8707) get a JWT access token: '*' (the default) any http(s)
// URL without a fragment; otherwise a comma-separated list of exact URLs.
const resourcesSetting = (args.resources ?? env.AUTHZ_RESOURCES ?? '*').trim();
const allowedResources = resourcesSetting === '*'
  ? null
  : new Set(resourcesSetting.split(',').map((r) => r.trim()).filter(Boolean));

// Client ID metadata documents on loopback (tests): the CA (PEM) their https certificates chain
// to. Unset: only documents on public https hosts (oidc-provider's own fetch and SSRF guard).
const cimdLoopbackCaPath = args['cimd-loopback-ca'] ?? env.AUTHZ_CIMD_LOOPBACK_CA;
const cimdLoopbackCa = cimdLoopbackCaPath ? readFileSync(resolve(cimdLoopbackCaPath)) : null;

// Lifetimes, in seconds.
const ACCESS_TOKEN_TTL = 10 * 60;
const ID_TOKEN_TTL = 10 * 60;
const REFRESH_TOKEN_TTL = 60 * 60;
const AUTHORIZATION_CODE_TTL = 60;

// --- Demo users (any password; unknown logins are refused) ------------------------------

const USERS = {
  alice: { groups: ['eng'] },
  bob: { groups: ['admins'] },
  sam: { groups: ['support'] },
};
const userClaims = (login) => ({
  sub: login,
  email: `${login}@example.com`,
  email_verified: true,
  groups: [...USERS[login].groups],
  name: login,
  preferred_username: login,
});

async function findAccount(_ctx, id) {
  if (!Object.hasOwn(USERS, id)) return undefined;
  return { accountId: id, claims: async () => userClaims(id) };
}

// --- Signing key: the PEM `mcptrail issuer` / `mcptrail token` use -----------------------

function loadOrCreateKey(path) {
  if (!existsSync(path)) {
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600, flag: 'wx' });
    log(`created a signing key in ${path}`);
  }
  const key = createPrivateKey(readFileSync(path, 'utf8'));
  if (key.asymmetricKeyType !== 'rsa') throw new Error(`${path}: not an RSA key`);
  // The kid `mcptrail issuer` publishes for this key (cli/src/issuer.rs): jwt-simple's
  // sha256_thumbprint(), base64url (no padding) of SHA-256 over the public key's DER
  // SubjectPublicKeyInfo.
  const spki = createPublicKey(key).export({ type: 'spki', format: 'der' });
  const kid = createHash('sha256').update(spki).digest('base64url');
  return { ...key.export({ format: 'jwk' }), kid, use: 'sig', alg: 'RS256' };
}

const signingKey = loadOrCreateKey(keyPath);

// --- Resource servers (RFC 8707) --------------------------------------------------------

function resourceAllowed(resource) {
  let url;
  try {
    url = new URL(resource);
  } catch {
    return false;
  }
  if (!['http:', 'https:'].includes(url.protocol) || url.hash || resource.includes('#')) return false;
  return allowedResources === null || allowedResources.has(resource);
}

// --- Dynamic registration: loopback redirect URIs only ----------------------------------

const LOOPBACK_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]']);
function loopbackRedirect(uri) {
  try {
    const url = new URL(uri);
    return url.protocol === 'http:' && LOOPBACK_HOSTS.has(url.hostname);
  } catch {
    return false;
  }
}

// --- Client ID metadata documents (URL client ids) -----------------------------------------

// oidc-provider (draft-02) takes only `https://` client ids and fetches them through a
// dispatcher that refuses special-use addresses (127.0.0.0/8, ::1, private ranges: SSRF
// guard). A document on this machine is therefore fetched only when --cimd-loopback-ca says
// which CA its certificate chains to, and then with node:https against that CA alone.
const LOOPBACK_HTTPS_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]']);
function loopbackHttps(url) {
  const u = URL.parse(String(url));
  return u !== null && u.protocol === 'https:' && LOOPBACK_HTTPS_HOSTS.has(u.hostname);
}

// The `fetch` oidc-provider calls (documents, jwks_uri, ...): its own for anything but a
// loopback https URL with a configured CA.
function fetchForProvider(url, options) {
  if (!cimdLoopbackCa || !loopbackHttps(url)) return globalThis.fetch(url, options);
  const { method = 'GET', headers, signal } = options;
  return new Promise((resolveFetch, reject) => {
    const req = httpsRequest(url, {
      method,
      headers: Object.fromEntries(new Headers(headers)),
      ca: cimdLoopbackCa,
      signal,
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const h = new Headers();
        for (const [k, v] of Object.entries(res.headers)) {
          for (const one of [v].flat()) h.append(k, one);
        }
        resolveFetch(new Response(Buffer.concat(chunks), { status: res.statusCode, headers: h }));
      });
    });
    req.on('error', reject);
    req.end();
  });
}

// --- Interactions: login, then consent --------------------------------------------------

// Consent is asked once per client in a browser session (a grant saved for the client in the
// session skips it), even when no scope is missing: signing in to an app is agreed to.
const policy = interactionPolicy.base();
policy.get('consent').checks.add(new interactionPolicy.Check(
  'client_not_yet_authorized',
  'the End-User has not yet authorized this client',
  (ctx) => {
    const { oidc } = ctx;
    if (oidc.result?.consent?.grantId || oidc.session?.grantIdFor(oidc.client.clientId)) {
      return interactionPolicy.Check.NO_NEED_TO_PROMPT;
    }
    return interactionPolicy.Check.REQUEST_PROMPT;
  },
));

// --- The provider -----------------------------------------------------------------------

const configuration = {
  clients: [{
    client_id: 'mcptrail-approvals',
    client_name: 'mcptrail approvals',
    application_type: 'web',
    token_endpoint_auth_method: 'none',
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    redirect_uris: [approvalsRedirect],
  }],
  clientDefaults: {
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    id_token_signed_response_alg: 'RS256',
  },
  responseTypes: ['code'],
  pkce: { required: () => true }, // oidc-provider only knows S256; `plain` is refused.
  findAccount,
  claims: {
    // Whoever asks for `openid` gets the identity the filter and the approvals page use.
    openid: ['sub', 'email', 'email_verified', 'groups'],
    email: ['email', 'email_verified'],
    groups: ['groups'],
    profile: ['name', 'preferred_username'],
  },
  scopes: ['openid', 'offline_access', 'email', 'groups', 'profile', 'mcp'],
  conformIdTokenClaims: false, // the ID token carries the claims itself (no userinfo call needed)
  jwks: { keys: [signingKey] },
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  routes: {
    // Where `mcptrail issuer` serves its keys too, so configs pointing there keep working.
    jwks: '/.well-known/jwks.json',
  },
  interactions: {
    policy,
    url: (_ctx, interaction) => `/interaction/${interaction.uid}`,
  },
  features: {
    devInteractions: { enabled: false },
    registration: { enabled: true }, // open (no initial access token)
    // MCP 2025-11-25: an https URL as client_id, its metadata document fetched (and cached)
    // by this server. Experimental in oidc-provider 9 (draft-02), hence the ack.
    clientIdMetadataDocument: {
      enabled: true,
      ack: 'draft-02',
      // Documents on this machine only with --cimd-loopback-ca (see fetchForProvider).
      allowFetch: async (_ctx, id) => {
        if (loopbackHttps(id) && !cimdLoopbackCa) {
          log(`client id metadata document refused: ${id} is on loopback (no --cimd-loopback-ca)`);
          return false;
        }
        return true;
      },
      // The registration rule holds for documents too: loopback redirect URIs only.
      allowClient: async (_ctx, client) => {
        const bad = client.redirectUris.filter((uri) => !loopbackRedirect(uri));
        if (bad.length) {
          log(`client id metadata document ${client.clientId} refused: non-loopback redirect_uris ${bad.join(' ')}`);
          return false;
        }
        return true;
      },
      cacheDuration: { min: 30, max: 60 * 60 },
    },
    revocation: { enabled: true },
    introspection: { enabled: true },
    userinfo: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: (_ctx, _client, oneOf) => oneOf,
      // A token request without `resource` gets the one resource granted.
      useGrantedResource: () => true,
      getResourceServerInfo(_ctx, resource) {
        if (!resourceAllowed(resource)) {
          throw new errors.InvalidTarget(`resource ${resource} is not served by this dev authorization server`);
        }
        return {
          scope: 'mcp openid email groups profile offline_access',
          audience: resource,
          accessTokenTTL: ACCESS_TOKEN_TTL,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
  extraClientMetadata: {
    // Listing a standard property here routes it through the validator below.
    properties: ['redirect_uris'],
    validator(ctx, key, value, metadata) {
      // `ctx` is set for registration requests (not for the static client above).
      if (ctx && key === 'redirect_uris') {
        const uris = value ?? [];
        const kept = uris.filter(loopbackRedirect);
        if (kept.length === 0) {
          throw new errors.CustomOIDCProviderError('invalid_redirect_uri',
            `the dev stack only registers loopback redirect URIs (http://127.0.0.1:*, http://localhost:*, http://[::1]:*), not ${uris.join(' ')}`);
        }
        // Some clients (VS Code) ask for a loopback and a web redirect together: RFC 7591
        // lets the server register fewer values than asked, so the loopback ones are kept
        // (the answer says which) and the web ones are never usable.
        if (kept.length !== uris.length) {
          log(`registration: kept the loopback redirect URIs ${kept.join(' ')}; dropped ${uris.filter((u) => !loopbackRedirect(u)).join(' ')}`);
          metadata.redirect_uris = kept;
        }
      }
    },
  },
  extraTokenClaims: async (_ctx, token) => {
    if (token.kind !== 'AccessToken' || !token.accountId || !Object.hasOwn(USERS, token.accountId)) {
      return undefined;
    }
    const { email, groups } = userClaims(token.accountId);
    return { email, groups };
  },
  issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
  rotateRefreshToken: () => true,
  ttl: {
    AccessToken: ACCESS_TOKEN_TTL,
    AuthorizationCode: AUTHORIZATION_CODE_TTL,
    IdToken: ID_TOKEN_TTL,
    RefreshToken: REFRESH_TOKEN_TTL,
    Interaction: 10 * 60,
    Session: 8 * 60 * 60,
    Grant: 8 * 60 * 60,
  },
  fetch: fetchForProvider,
  clientBasedCORS: () => true, // browser-based MCP clients on any origin (dev stack)
  renderError: async (ctx, out) => {
    ctx.type = 'html';
    ctx.body = page('Error', `<p class="err">${esc(out.error)}: ${esc(out.error_description ?? '')}</p>`);
  },
};

const provider = new Provider(issuer, configuration);

// --- HTML -------------------------------------------------------------------------------

const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => ({
  '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
})[c]);

const STYLE = `
*{box-sizing:border-box}
body{margin:0;min-height:100vh;background:#eef1f5;color:#1d2330;
  font:16px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
main{max-width:25rem;margin:9vh auto 2rem;padding:0 1rem}
.brand{display:flex;align-items:center;gap:.5rem;margin:0 0 1rem .25rem;color:#4a5568;
  font-size:.92rem;letter-spacing:.01em}
.brand b{color:#1d2330}
.dot{width:.7rem;height:.7rem;border-radius:50%;background:#3867d6}
.card{background:#fff;border-radius:12px;padding:1.8rem 1.8rem 1.4rem;
  box-shadow:0 1px 2px rgba(16,24,40,.06),0 8px 24px rgba(16,24,40,.08)}
h1{margin:0 0 .3rem;font-size:1.45rem}
.sub{margin:0 0 1.2rem;color:#4a5568}
label{display:block;margin:.9rem 0 .3rem;font-weight:600;font-size:.9rem}
input{width:100%;padding:.6rem .7rem;border:1px solid #c7ced9;border-radius:8px;font:inherit}
input:focus{outline:2px solid #3867d6;outline-offset:1px;border-color:#3867d6}
.actions{display:flex;align-items:center;justify-content:space-between;margin-top:1.4rem}
button{padding:.6rem 1.4rem;border:0;border-radius:8px;background:#3867d6;color:#fff;
  font:inherit;font-weight:600;cursor:pointer}
button:hover{background:#2d56b8}
a{color:#3867d6}
.secondary{color:#4a5568}
.err{margin:0 0 .8rem;padding:.55rem .75rem;border-radius:8px;background:#fdecec;color:#a61b1b}
.note{margin:1.2rem 0 0;padding-top:1rem;border-top:1px solid #e6e9ef;color:#5a6473;font-size:.88rem}
.chip{display:inline-block;padding:.05rem .5rem;margin:0 .15rem;border-radius:999px;
  background:#eef1f5;font-family:ui-monospace,monospace;font-size:.85rem;color:#1d2330}
ul.grants{margin:.2rem 0 0;padding:0;list-style:none}
ul.grants li{padding:.55rem 0 .55rem 1.6rem;border-bottom:1px solid #eef1f5;position:relative}
ul.grants li::before{content:"\\2713";position:absolute;left:.2rem;color:#2f9e44;font-weight:700}
code{font-family:ui-monospace,monospace;font-size:.88rem;background:#f4f6f9;padding:.05rem .3rem;
  border-radius:4px;word-break:break-all}
`;

function page(title, body) {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>${esc(title)} · mcptrail dev sign-in</title>
<style>${STYLE}</style>
</head><body><main>
<div class="brand"><span class="dot"></span><span><b>mcptrail</b> · development sign-in</span></div>
<div class="card"><h1>${esc(title)}</h1>
${body}
</div></main></body></html>`;
}

// A client known by its metadata document URL is shown with that URL's host too.
function clientLabel(clientId, clientName) {
  const url = URL.parse(String(clientId ?? ''));
  const host = url?.protocol === 'https:' ? ` <span class="secondary">(${esc(url.host)})</span>` : '';
  return `<b>${esc(clientName)}</b>${host}`;
}

function loginPage(uid, clientId, clientName, error) {
  const users = Object.entries(USERS)
    .map(([login, { groups }]) => `<span class="chip">${esc(login)}</span>(${esc(groups.join(', '))})`)
    .join(' ');
  return page('Sign in', `<p class="sub">to continue to ${clientLabel(clientId, clientName)}</p>
${error ? `<p class="err">${esc(error)}</p>` : ''}<form method="post" action="/interaction/${esc(uid)}/login" autocomplete="off">
<label for="login">Login</label><input id="login" name="login" autofocus required>
<label for="password">Password</label><input id="password" name="password" type="password">
<div class="actions"><a class="secondary" href="/interaction/${esc(uid)}/abort">Cancel</a>
<button type="submit">Sign in</button></div>
</form>
<p class="note">Development users: ${users}. Any password.</p>`);
}

function consentPage(uid, clientId, clientName, account, params) {
  const scope = params.scope ? `<li>scopes <code>${esc(params.scope)}</code></li>` : '';
  const resource = [params.resource].flat().filter(Boolean)
    .map((r) => `<li>access to<br><code>${esc(r)}</code></li>`).join('');
  return page('Authorize', `<p class="sub">${clientLabel(clientId, clientName)} asks to act as <b>${esc(account)}</b>:</p>
<ul class="grants">${resource}${scope}<li>your identity: login, email, groups</li></ul>
<form method="post" action="/interaction/${esc(uid)}/confirm">
<div class="actions"><a class="secondary" href="/interaction/${esc(uid)}/abort">Deny</a>
<button type="submit" name="decision" value="allow">Allow</button></div>
</form>`);
}

async function formBody(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 16 * 1024) throw new errors.InvalidRequest('form too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

// The interaction routes (oidc-provider's documented interaction API, as in its example/ app).
const INTERACTION = /^\/interaction\/([A-Za-z0-9_-]+)(?:\/(login|confirm|abort))?$/;

provider.use(async (ctx, next) => {
  // RFC 8414 discovery: the same metadata as OpenID discovery.
  if (ctx.path === '/.well-known/oauth-authorization-server') {
    ctx.path = '/.well-known/openid-configuration';
    return next();
  }
  // oidc-provider resolves a request that grants no scope at all with access_denied; MCP
  // clients may send none (the resource's metadata need not list scopes): default to openid.
  if (ctx.path === '/auth' && ctx.method === 'GET' && !ctx.query.scope) {
    ctx.query = { ...ctx.query, scope: 'openid' };
    return next();
  }
  const m = INTERACTION.exec(ctx.path);
  if (!m) return next();
  const [, uid, action] = m;
  ctx.set('cache-control', 'no-store');
  try {
    const details = await provider.interactionDetails(ctx.req, ctx.res);
    if (details.uid !== uid) throw new errors.SessionNotFound('interaction mismatch');
    const { prompt, params, session } = details;
    const client = await provider.Client.find(params.client_id);
    const clientName = client?.clientName ?? params.client_id;

    if (!action && ctx.method === 'GET') {
      ctx.type = 'html';
      ctx.body = prompt.name === 'login'
        ? loginPage(uid, params.client_id, clientName)
        : consentPage(uid, params.client_id, clientName, session?.accountId, params);
      return undefined;
    }
    if (action === 'login' && ctx.method === 'POST') {
      if (prompt.name !== 'login') throw new errors.InvalidRequest('not at the login step');
      const form = await formBody(ctx.req);
      const login = (form.get('login') ?? '').trim();
      if (!Object.hasOwn(USERS, login)) {
        log(`sign-in refused: unknown login ${JSON.stringify(login)}`);
        ctx.status = 401;
        ctx.type = 'html';
        ctx.body = loginPage(uid, params.client_id, clientName, `Unknown login "${login}".`);
        return undefined;
      }
      log(`signed in: ${login} (client ${params.client_id})`);
      return provider.interactionFinished(ctx.req, ctx.res, { login: { accountId: login } },
        { mergeWithLastSubmission: false });
    }
    if (action === 'confirm' && ctx.method === 'POST') {
      if (prompt.name !== 'consent') throw new errors.InvalidRequest('not at the consent step');
      await formBody(ctx.req);
      const { details: missing } = prompt;
      let { grantId } = details;
      const grant = grantId
        ? await provider.Grant.find(grantId)
        : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
      if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
      if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
      for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
        grant.addResourceScope(indicator, scopes.join(' '));
      }
      grantId = await grant.save();
      log(`consent: ${session.accountId} allowed client ${params.client_id}`);
      const consent = details.grantId ? {} : { grantId };
      return provider.interactionFinished(ctx.req, ctx.res, { consent },
        { mergeWithLastSubmission: true });
    }
    if (action === 'abort' && ctx.method === 'GET') {
      log(`interaction cancelled (client ${params.client_id})`);
      return provider.interactionFinished(ctx.req, ctx.res, {
        error: 'access_denied', error_description: 'End-User aborted interaction',
      }, { mergeWithLastSubmission: false });
    }
    ctx.status = 405;
    ctx.body = 'method not allowed';
    return undefined;
  } catch (err) {
    if (!(err instanceof errors.OIDCProviderError)) throw err;
    ctx.status = err.status ?? 400;
    ctx.type = 'html';
    ctx.body = page('Error', `<p class="err">${esc(err.error)}: ${esc(err.error_description ?? err.message)}</p>`);
    return undefined;
  }
});

// --- Log lines --------------------------------------------------------------------------

provider.on('registration_create.success', (_ctx, client) => {
  log(`registered client ${client.clientId} (${client.clientName ?? 'unnamed'}) redirect_uris=${client.redirectUris.join(' ')}`);
});
provider.on('registration_create.error', (_ctx, err) => log(`registration refused: ${err.error}: ${err.error_description}`));
provider.on('authorization.error', (_ctx, err) => log(`authorization error: ${err.error}: ${err.error_description}`));
provider.on('grant.success', (ctx) => {
  const { params } = ctx.oidc;
  log(`token issued: grant_type=${params.grant_type} client=${ctx.oidc.client?.clientId}${params.resource ? ` resource=${params.resource}` : ''}`);
});
provider.on('grant.error', (_ctx, err) => log(`token refused: ${err.error}: ${err.error_description}`));
provider.on('server_error', (_ctx, err) => console.error('authz: server error', err));

// --- Listen (loopback only) -------------------------------------------------------------

const server = provider.listen(port, '127.0.0.1', () => {
  log(`issuer ${issuer} listening on 127.0.0.1:${port}`);
  log(`discovery ${issuer}/.well-known/oauth-authorization-server (and /.well-known/openid-configuration)`);
  log(`signing key ${keyPath} kid ${signingKey.kid}; jwks ${issuer}/.well-known/jwks.json`);
  log(`client mcptrail-approvals redirect_uri ${approvalsRedirect}; users ${Object.keys(USERS).join(', ')} (any password)`);
  log(`resources: ${allowedResources ? [...allowedResources].join(', ') : 'any http(s) URL'}`);
});
server.on('error', (err) => {
  console.error(`authz: cannot listen on 127.0.0.1:${port}: ${err.message}`);
  process.exit(1);
});
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => process.exit(0));
}
