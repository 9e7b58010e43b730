-- Vulnerability database and scan results. Times are Unix milliseconds.
-- One row per OSV advisory ever imported. `record` is the OSV JSON as imported; `withdrawn`
-- rows are kept (so a re-import of the same `modified` is recognised as unchanged) but never
-- matched. `aliases` is a space-separated list, for "which artifacts does CVE-X affect".
CREATE TABLE vuln_advisories (
    id          TEXT PRIMARY KEY,
    modified    TEXT NOT NULL,
    withdrawn   INTEGER NOT NULL DEFAULT 0,
    aliases     TEXT NOT NULL DEFAULT '',
    record      TEXT NOT NULL,
    imported_at INTEGER NOT NULL
);

-- Where advisories came from: one row per imported path, replaced on each import of it.
CREATE TABLE vuln_sources (
    name        TEXT PRIMARY KEY,
    path        TEXT NOT NULL,
    imported_at INTEGER NOT NULL,
    records     INTEGER NOT NULL,
    errors      INTEGER NOT NULL DEFAULT 0
);

-- The database's generation: bumped by every import that changed an advisory, so scanners know
-- their in-memory index and stored results are stale. `updated_at` is the last import's time
-- (whether or not it changed anything): the database's age is measured from it.
CREATE TABLE vuln_db (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    generation  INTEGER NOT NULL,
    changed_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
INSERT INTO vuln_db (id, generation, changed_at, updated_at) VALUES (1, 0, 0, 0);

-- The latest scan of each artifact: the database generation it ran against, when, the findings
-- (JSON array) and counts by severity (JSON object), and the signed report referrer, if stored.
CREATE TABLE vuln_scans (
    repo        TEXT NOT NULL,
    digest      TEXT NOT NULL,
    generation  INTEGER NOT NULL,
    scanned_at  INTEGER NOT NULL,
    sboms       INTEGER NOT NULL,
    components  INTEGER NOT NULL,
    findings    TEXT NOT NULL,
    counts      TEXT NOT NULL,
    report      TEXT,
    PRIMARY KEY (repo, digest)
);
CREATE INDEX vuln_scans_generation ON vuln_scans(generation);
