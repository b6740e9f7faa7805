-- The grant types each client may use at the token endpoint: a JSON list of wire names, as in
-- RFC 7591 `grant_types`. Until now none were stored, and the token endpoint served every grant
-- type to any client that authenticated with a secret or a signed assertion, including clients
-- that had registered themselves for the code flow only.
--
-- The default is the code flow, the least any client has: a row written without this column
-- (by an issuer of the previous version still running beside a migrated one) is refused
-- client_credentials and token exchange rather than given them. That fails closed: an
-- operator agent registered through such an issuer during an upgrade is registered again.
ALTER TABLE clients ADD COLUMN grant_types TEXT NOT NULL
    DEFAULT '["authorization_code","refresh_token"]';

-- Operator clients keep what they could use: every grant type for an agent with a credential,
-- the code flow for a public client (the token endpoint held public clients to it already).
UPDATE clients
   SET grant_types = '["authorization_code","refresh_token","client_credentials","urn:ietf:params:oauth:grant-type:token-exchange"]'
 WHERE origin = 'operator' AND auth_method <> 'none';

-- Clients of origin dynamic (RFC 7591) and metadata keep the default. Registration refused
-- any grant type outside the code flow, so the code flow is the most any of them asked for;
-- what each asked for was not stored, and a metadata client's document is read again within
-- minutes (its own grant_types are stored then).
