-- Lookups that stay indexed as the directory grows (issue 5, found at 20k users).
-- Keep the version in step with migrations/sqlite/0007_key_collation.sql.
--
-- 1. The *_key columns hold text lower-cased in Rust. Under a linguistic collation (en_US,
--    or C.UTF-8 before PostgreSQL 17) a B-tree cannot serve `LIKE 'prefix%'`, so the admin
--    API's username-prefix search and SCIM `sw` filters read the whole table. The "C"
--    collation (byte order) lets them use the index, keeps equality and uniqueness exactly as
--    before, and sorts the way SQLite's BINARY does, so both stores page in the same order.
ALTER TABLE users ALTER COLUMN username_key TYPE TEXT COLLATE "C";
ALTER TABLE scim_users
    ALTER COLUMN display_name_key TYPE TEXT COLLATE "C",
    ALTER COLUMN family_name_key TYPE TEXT COLLATE "C",
    ALTER COLUMN given_name_key TYPE TEXT COLLATE "C",
    ALTER COLUMN employee_number_key TYPE TEXT COLLATE "C",
    ALTER COLUMN department_key TYPE TEXT COLLATE "C",
    ALTER COLUMN external_id TYPE TEXT COLLATE "C",
    ALTER COLUMN manager_value TYPE TEXT COLLATE "C";
ALTER TABLE scim_groups
    ALTER COLUMN display_name_key TYPE TEXT COLLATE "C",
    ALTER COLUMN external_id TYPE TEXT COLLATE "C";
ALTER TABLE scim_values
    ALTER COLUMN value_key TYPE TEXT COLLATE "C",
    ALTER COLUMN type_key TYPE TEXT COLLATE "C";

-- 2. SCIM `co` and `ew` on multi-valued attributes (`emails[type eq "work" and value co "x"]`)
--    are `LIKE '%x%'`, which no B-tree serves. A trigram GIN index does. pg_trgm ships with
--    PostgreSQL's contrib package and is a trusted extension (no superuser needed); where it is
--    missing, filters still work, by scanning the attribute's rows, and the server says so here.
--    It goes into `public` so that databases holding several Wardkey schemas share one copy.
DO $$
BEGIN
    CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public;
    CREATE INDEX scim_values_value_trgm ON scim_values USING gin (value_key public.gin_trgm_ops);
EXCEPTION WHEN OTHERS THEN
    RAISE WARNING 'pg_trgm is not available (%): SCIM "co"/"ew" filters on multi-valued attributes will scan that attribute''s values', SQLERRM;
END
$$;
