-- Vulnerability waivers: a team's deliberate acceptance of a finding (docs/vulnerabilities.md).
-- Times are Unix milliseconds. A waiver applies to findings whose advisory id or one of whose
-- aliases equals `advisory`, in the repositories `scope` covers (a namespace pattern such as
-- `shop/**`, or one artifact `repo@digest`, then `repo`/`digest` are set), optionally only in
-- `package`, until `expires_at` or until revoked. Rows are never deleted: revoked and expired
-- waivers stay for the record (and the VEX history).
CREATE TABLE vuln_waivers (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
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
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    revoked_at    INTEGER,
    revoked_by    TEXT
);
CREATE INDEX vuln_waivers_active ON vuln_waivers(expires_at) WHERE revoked_at IS NULL;
