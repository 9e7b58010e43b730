-- Collection walks its queue in digest order (docs/gc.md, "Finding candidates"). Clustering the
-- queue on digest (WITHOUT ROWID) makes the entries of one batch neighbours on disk, and so are
-- the blob, link and reference index entries each one looks up: a pass over a million entries
-- then rewrites a few pages per batch instead of one page per entry.
CREATE TABLE gc_queue_by_digest (
    digest    TEXT PRIMARY KEY,
    due_at    INTEGER NOT NULL,
    marked_at INTEGER,
    gen       INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
INSERT INTO gc_queue_by_digest (digest, due_at, marked_at, gen)
    SELECT digest, due_at, marked_at, gen FROM gc_queue;
DROP TABLE gc_queue;
ALTER TABLE gc_queue_by_digest RENAME TO gc_queue;
CREATE INDEX gc_queue_due ON gc_queue(due_at) WHERE marked_at IS NULL;
CREATE INDEX gc_queue_marked ON gc_queue(marked_at) WHERE marked_at IS NOT NULL;

-- The look-ups a mark pass makes for each entry, answered from indexes alone (no table row
-- read, which would be a random page per entry): is the blob live, is it referenced, when was
-- it last linked. The first two replace narrower indexes on the same leading column.
DROP INDEX manifest_refs_child;
CREATE INDEX manifest_refs_child_kind ON manifest_refs(child, kind);
DROP INDEX repo_blobs_digest;
CREATE INDEX repo_blobs_digest_created ON repo_blobs(digest, created_at);
CREATE INDEX blobs_digest_deleting ON blobs(digest, deleting_at);
