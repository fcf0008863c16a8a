-- Sign-in hardening. Keep in step with migrations/postgres/0010_authn_hardening.sql.
--
-- Failed second factors are counted apart from failed passwords, so a correct password no
-- longer clears them; each session also counts its own failed second factors (bounded).
ALTER TABLE login_failures ADD COLUMN second_factor_consecutive BIGINT NOT NULL DEFAULT 0;
ALTER TABLE login_failures ADD COLUMN second_factor_last_failure_at BIGINT;
ALTER TABLE sessions ADD COLUMN second_factor_failures BIGINT NOT NULL DEFAULT 0;

-- The confusable skeleton (Unicode TS #39) of each live username: two live users may not
-- share one, so `һ.nurse` (Cyrillic) cannot be created beside `h.nurse`. SQL cannot compute
-- skeletons: the column starts empty and the store fills it in when it opens (Rust, the same
-- function the write path uses). Existing users whose skeletons already collide are kept;
-- the second one keeps an empty skeleton (the store logs it at every start until an
-- administrator renames one of them) and new names are still checked against the first.
ALTER TABLE users ADD COLUMN username_skeleton TEXT;
-- `username_skeleton IS NOT NULL` in the predicate keeps the planner from choosing this index
-- to scan all live users (no query but the uniqueness check needs it).
CREATE UNIQUE INDEX users_username_skeleton_live ON users (username_skeleton)
    WHERE deleted_at IS NULL AND username_skeleton IS NOT NULL;
