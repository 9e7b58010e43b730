-- Configured OSV mirrors (PostgreSQL flavour of migrations/sqlite/0010_vuln_ops.sql). Times are
-- Unix milliseconds.
CREATE TABLE vuln_mirrors (
    url           TEXT PRIMARY KEY,
    fetched_at    BIGINT NOT NULL,
    outcome       TEXT NOT NULL,
    message       TEXT NOT NULL DEFAULT '',
    etag          TEXT,
    last_modified TEXT,
    imported_at   BIGINT NOT NULL DEFAULT 0
);
