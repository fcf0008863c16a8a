-- Keep the version in step with migrations/postgres/0007_key_collation.sql, which gives the
-- PostgreSQL *_key columns byte-order collation and a trigram index for SCIM `co` filters.
-- SQLite compares text byte by byte (BINARY) already, so its prefix LIKEs on those columns
-- are written as range-safe comparisons and nothing changes here.
SELECT 1;
