// A DPoP client built on oauth4webapi 3.8.9 (a third-party OAuth 2 client library from the npm
// registry), run against the issuer and the gateway. With a key pair it generates (ES256), it
// discovers the issuer, gets its client token bound to that key, exchanges the user's subject
// token for a delegation token bound to the same key (RFC 8693 through the library's generic
// token request), and calls `initialize` through the gateway with the proofs the library makes.
// Then it sends the same token as Bearer, which must be refused. Prints one JSON line.
//
// Environment: OAUTH4WEBAPI_MODULE (the library's ESM entry point, in .tools/), ISSUER_URL,
// CLIENT_ID, CLIENT_SECRET, SUBJECT_TOKEN, RESOURCE (the gateway endpoint).
import { pathToFileURL } from 'node:url';

const oauth = await import(pathToFileURL(process.env.OAUTH4WEBAPI_MODULE).href);
const ACCESS_TOKEN = 'urn:ietf:params:oauth:token-type:access_token';
// Loopback over plain HTTP, in this test only.
const insecure = { [oauth.allowInsecureRequests]: true };

const issuer = new URL(process.env.ISSUER_URL);
const as = await oauth.processDiscoveryResponse(
  issuer,
  await oauth.discoveryRequest(issuer, { algorithm: 'oauth2', ...insecure }),
);
const client = { client_id: process.env.CLIENT_ID };
const auth = oauth.ClientSecretBasic(process.env.CLIENT_SECRET);
const DPoP = oauth.DPoP(client, await oauth.generateKeyPair('ES256'));
const seen = { dpopAlgs: as.dpop_signing_alg_values_supported };

const clientToken = await oauth.processClientCredentialsResponse(
  as,
  client,
  await oauth.clientCredentialsGrantRequest(as, client, auth, {}, { DPoP, ...insecure }),
);
seen.clientTokenType = clientToken.token_type;

const delegation = await oauth.processGenericTokenEndpointResponse(
  as,
  client,
  await oauth.genericTokenEndpointRequest(
    as,
    client,
    auth,
    'urn:ietf:params:oauth:grant-type:token-exchange',
    {
      subject_token: process.env.SUBJECT_TOKEN,
      subject_token_type: ACCESS_TOKEN,
      actor_token: clientToken.access_token,
      actor_token_type: ACCESS_TOKEN,
      resource: process.env.RESOURCE,
    },
    { DPoP, ...insecure },
  ),
);
seen.delegationTokenType = delegation.token_type;

const initialize = JSON.stringify({
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: {
    protocolVersion: '2025-06-18',
    capabilities: {},
    clientInfo: { name: 'oauth4webapi-dpop', version: '1' },
  },
});
const headers = () =>
  new Headers({ 'content-type': 'application/json', accept: 'application/json, text/event-stream' });
const resource = new URL(process.env.RESOURCE);
const answered = await oauth.protectedResourceRequest(
  delegation.access_token,
  'POST',
  resource,
  headers(),
  initialize,
  { DPoP, ...insecure },
);
seen.status = answered.status;
const text = await answered.text();
// JSON, or an event stream whose first events may carry no data (a stream's priming event).
const json = text.startsWith('{')
  ? text
  : text.split('\n').map((l) => l.replace(/^data: ?/, '')).find((l) => l.startsWith('{'));
seen.serverName = JSON.parse(json ?? 'null')?.result?.serverInfo?.name ?? null;

const bearer = headers();
bearer.set('authorization', `Bearer ${delegation.access_token}`);
const asBearer = await fetch(resource, { method: 'POST', headers: bearer, body: initialize });
seen.asBearer = asBearer.status;
console.log(JSON.stringify(seen));
