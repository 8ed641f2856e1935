// mcptrail's development authorization server: OAuth 2.1 / OpenID Connect from the
// OpenID-certified `oidc-provider` (panva), configured for the MCP authorization spec
// (2025-11-25). Development settings only: in-memory storage, cookie keys made at each
// start, demo users who sign in with any password, open registration for loopback clients.
// README.md in this directory lists the endpoints, users, clients and lifetimes.
//
//   node server.mjs [--port 9400] [--key ../.run/issuer-key.pem] [--issuer URL]
//                   [--approvals-redirect URL] [--resources '*' | URL,URL...]
// Each flag has an environment variable too (AUTHZ_PORT, AUTHZ_KEY, AUTHZ_ISSUER,
// AUTHZ_APPROVALS_REDIRECT, AUTHZ_RESOURCES); flags win.

import {
  createHash, createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes,
} from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
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
    validator(ctx, key, value) {
      // `ctx` is set for registration requests (not for the static client above).
      if (ctx && key === 'redirect_uris') {
        for (const uri of value ?? []) {
          if (!loopbackRedirect(uri)) {
            throw new errors.CustomOIDCProviderError('invalid_redirect_uri',
              `the dev stack only registers loopback redirect URIs (http://127.0.0.1:*, http://localhost:*, http://[::1]:*), not ${uri}`);
          }
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

function page(title, body) {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>${esc(title)} · mcptrail dev sign-in</title>
<style>body{font-family:system-ui,sans-serif;max-width:26rem;margin:4rem auto;padding:0 1rem}
label{display:block;margin:.8rem 0 .2rem}input{width:100%;padding:.4rem;box-sizing:border-box}
button{margin-top:1rem;padding:.5rem 1.2rem}.err{color:#b00}.note{color:#666;font-size:.9em}</style>
</head><body><h1>${esc(title)}</h1>
${body}
</body></html>`;
}

function loginPage(uid, clientName, error) {
  return page('Sign in', `<p>to <b>${esc(clientName)}</b></p>
${error ? `<p class="err">${esc(error)}</p>` : ''}<form method="post" action="/interaction/${esc(uid)}/login" autocomplete="off">
<label for="login">Login</label><input id="login" name="login" autofocus required>
<label for="password">Password</label><input id="password" name="password" type="password">
<button type="submit">Sign in</button>
</form>
<p class="note">Development users: ${Object.keys(USERS).map(esc).join(', ')}; any password.</p>
<p><a href="/interaction/${esc(uid)}/abort">Cancel</a></p>`);
}

function consentPage(uid, clientName, account, params) {
  const scope = params.scope ? `<li>scopes: ${esc(params.scope)}</li>` : '';
  const resource = [params.resource].flat().filter(Boolean)
    .map((r) => `<li>access to <code>${esc(r)}</code></li>`).join('');
  return page('Authorize', `<p><b>${esc(clientName)}</b> asks to act as <b>${esc(account)}</b>:</p>
<ul>${resource}${scope}<li>your identity: login, email, groups</li></ul>
<form method="post" action="/interaction/${esc(uid)}/confirm">
<button type="submit" name="decision" value="allow">Allow</button>
</form>
<p><a href="/interaction/${esc(uid)}/abort">Deny</a></p>`);
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
        ? loginPage(uid, clientName)
        : consentPage(uid, clientName, session?.accountId, params);
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
        ctx.body = loginPage(uid, clientName, `Unknown login "${login}".`);
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
