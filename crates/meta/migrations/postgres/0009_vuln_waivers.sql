-- Vulnerability waivers (PostgreSQL flavour of migrations/sqlite/0009_vuln_waivers.sql).
-- Times are Unix milliseconds. A waiver applies to findings whose advisory id or one of whose
-- aliases equals `advisory`, in the repositories `scope` covers (a namespace pattern such as
-- `shop/**`, or one artifact `repo@digest`, then `repo`/`digest` are set), optionally only in
-- `package`, until `expires_at` or until revoked. Rows are never deleted: revoked and expired
-- waivers stay for the record (and the VEX history).
CREATE TABLE vuln_waivers (
    id            BIGSERIAL PRIMARY KEY,
    advisory      TEXT NOT NULL,
    scope         TEXT NOT NULL,
    repo          TEXT,
    digest        TEXT,
    package       TEXT,
    state         TEXT NOT NULL,
    justification TEXT,
    responses     TEXT NOT NULL DEFAULT '',
    reason        TEXT NOT NULL,
    author        TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    revoked_at    BIGINT,
    revoked_by    TEXT
);
CREATE INDEX vuln_waivers_active ON vuln_waivers(expires_at) WHERE revoked_at IS NULL;
