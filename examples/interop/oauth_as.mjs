// An upstream OAuth 2.1 authorization server built on oidc-provider 9.13.3 (panva's certified
// OpenID Provider, from the npm registry), standing in for a third-party service whose own users
// sign in to grant access to its MCP server (examples/interop/oauth_mcp_server.py).
//
// - Dynamic client registration (RFC 7591) at /reg, open: no initial access token.
// - Authorization code with PKCE S256, required of every client, public or confidential; client
//   authentication client_secret_basic, client_secret_post (and the library's other methods).
// - A refresh token for every client registered with the refresh_token grant: no offline_access
//   scope or prompt=consent needed. Every refresh rotates it; presenting a used one again is
//   invalid_grant and revokes the whole grant (the newest refresh token too).
// - Resource indicators (RFC 8707): RESOURCE is the only resource server (any other is
//   invalid_target). Its access tokens are JWTs (typ at+jwt, RS256, key in /jwks) with
//   aud = RESOURCE, sub = the login name, valid for ACCESS_TTL seconds, and scope "mcp" when the
//   authorization request asked for it (with only offline_access they carry no scope). A request
//   that names no resource can be granted only OpenID scopes: `scope=mcp` alone is then
//   access_denied, and with `openid` the access token is an opaque one for /me. At the token
//   endpoint `resource` may be left out unless `openid` was asked for.
// - Metadata (RFC 8414) at /.well-known/oauth-authorization-server (and the OpenID path).
//
// Sign-in and consent are the library's built-in development pages (devInteractions): any login
// name is accepted, with any password, and becomes the account's `sub`. A scripted client with a
// cookie jar goes through them like this (all on the issuer's origin):
//   1. GET /auth?response_type=code&client_id=..&redirect_uri=..&scope=mcp&resource=RESOURCE
//        &state=..&code_challenge=..&code_challenge_method=S256
//      → 303 to /interaction/{uid} (a relative Location; cookies _interaction and
//      _interaction_resume are set); GET it for the sign-in page.
//   2. POST /interaction/{uid}, form-encoded: prompt=login, login=<name>, password=<anything>
//      → 303 to /auth/{uid}; GET it → 303 to /interaction/{uid2} (a new uid): the consent page.
//   3. POST /interaction/{uid2}, form-encoded: prompt=consent
//      → 303 to /auth/{uid2}; GET it → 303 to redirect_uri?code=..&state=..&iss=.. (do not follow).
//   Then POST /token: grant_type=authorization_code, code, redirect_uri, code_verifier, resource.
// The form actions are absolute URLs in the pages' HTML, so a client may also read them there.
//
// Environment: PORT (binds 127.0.0.1), ISSUER_URL (http://127.0.0.1:PORT), OIDC_PROVIDER (the
// path of the package's main module, lib/index.js), RESOURCE (the MCP endpoint's URL),
// ACCESS_TTL (seconds, default 60). Prints `listening <issuer>` once it accepts connections and
// stops on SIGTERM.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { pathToFileURL } from 'node:url';

const { default: Provider, errors } = await import(
  pathToFileURL(process.env.OIDC_PROVIDER).href
);
const ISSUER = process.env.ISSUER_URL;
const RESOURCE = process.env.RESOURCE;
const ACCESS_TTL = Number(process.env.ACCESS_TTL ?? 60);

// A fresh signing key per run: tokens are only ever checked against this run's /jwks.
const signingKey = {
  ...generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' }),
  kid: randomBytes(8).toString('hex'),
  alg: 'RS256',
  use: 'sig',
};

const provider = new Provider(ISSUER, {
  jwks: { keys: [signingKey] },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  // Every login name is an account whose subject is that name.
  findAccount: (_ctx, sub) => ({ accountId: sub, claims: () => ({ sub }) }),
  responseTypes: ['code'],
  pkce: { required: () => true },
  issueRefreshToken: (_ctx, client) => client.grantTypeAllowed('refresh_token'),
  rotateRefreshToken: true,
  // A refresh token outlives the browser session at this server, as a real upstream's does.
  expiresWithSession: () => false,
  features: {
    devInteractions: { enabled: true },
    registration: { enabled: true },
    resourceIndicators: {
      enabled: true,
      getResourceServerInfo(_ctx, indicator) {
        if (indicator !== RESOURCE) throw new errors.InvalidTarget();
        return {
          scope: 'mcp',
          audience: RESOURCE,
          accessTokenTTL: ACCESS_TTL,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
});

const server = createServer(provider.callback());
server.listen(Number(process.env.PORT), '127.0.0.1', () => console.log(`listening ${ISSUER}`));
process.once('SIGTERM', () => {
  server.close();
  server.closeAllConnections();
});
