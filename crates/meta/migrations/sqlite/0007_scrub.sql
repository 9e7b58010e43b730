-- Integrity scrubbing (docs/scrub.md). Times are Unix milliseconds.

-- Blobs whose stored bytes no longer hash to their digest ('corrupt') or are gone ('missing').
-- Pulls refuse a quarantined blob; a push of the same digest with correct bytes repairs it and
-- removes the row. No foreign key to `blobs`: the record outlives a collection of the blob, it is
-- the evidence (with the bytes moved under `quarantine/` in the blob store).
CREATE TABLE quarantined_blobs (
    digest         TEXT PRIMARY KEY,
    reason         TEXT NOT NULL CHECK (reason IN ('corrupt', 'missing')),
    detail         TEXT NOT NULL,
    quarantined_at INTEGER NOT NULL
);
