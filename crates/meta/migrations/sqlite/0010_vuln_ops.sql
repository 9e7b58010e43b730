-- Configured OSV mirrors (`[scan] mirror_url`): the last fetch of each URL, how it ended, and the
-- validators (ETag, Last-Modified) of the last archive imported, for a conditional GET. Times
-- are Unix milliseconds.
CREATE TABLE vuln_mirrors (
    url           TEXT PRIMARY KEY,
    fetched_at    INTEGER NOT NULL,
    outcome       TEXT NOT NULL,
    message       TEXT NOT NULL DEFAULT '',
    etag          TEXT,
    last_modified TEXT,
    imported_at   INTEGER NOT NULL DEFAULT 0
);
