-- Every API token names an owner (issue 16, item 4): the person or service account it acts
-- for, so that disabling them revokes it. Keep in step with migrations/sqlite/0009_token_owners.sql.
--
-- Tokens that exist when this runs get an owner from what is known about them:
--   * created by a person (created_by `user:<id>`): that person, which is what the leaver path
--     already assumed (it revoked a leaver's tokens by creator);
--   * the first-start bootstrap token (created_by `system:bootstrap`): `system:bootstrap`;
--   * anything else (created by another token or by the local operator): `system:migrated`.
--     Such tokens keep working until they expire; list them with `wardkey token list` and
--     reissue them to a named owner.
ALTER TABLE api_tokens ADD COLUMN owner_kind TEXT NOT NULL DEFAULT 'system';
ALTER TABLE api_tokens ADD COLUMN owner_id TEXT COLLATE "C" NOT NULL DEFAULT 'migrated';
UPDATE api_tokens SET owner_kind = 'user', owner_id = substr(created_by, 6) WHERE created_by LIKE 'user:%';
UPDATE api_tokens SET owner_id = 'bootstrap' WHERE created_by = 'system:bootstrap';
-- The bootstrap admin token now lives 24 hours from its issue (microseconds).
UPDATE api_tokens SET expires_at = created_at + 86400000000
    WHERE owner_kind = 'system' AND owner_id = 'bootstrap' AND (expires_at IS NULL OR expires_at > created_at + 86400000000);
CREATE INDEX api_tokens_owner ON api_tokens (owner_kind, owner_id);
