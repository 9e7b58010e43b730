-- Online garbage collection (docs/gc.md). Times are Unix milliseconds.

-- Set when a sweep has committed to deleting the blob's bytes; the row goes once they are gone.
-- A blob in this state is invisible: it has no links, cannot be linked, mounted or pinned.
ALTER TABLE blobs ADD COLUMN deleting_at INTEGER;

-- Blobs that may have become unreferenced, and when to look at them. Every event that can leave
-- a blob unreferenced (a new link, an unlink, a manifest purged) queues it, so collection looks at
-- what changed instead of walking every blob. `marked_at` is set once a look found it unreferenced;
-- it is swept a grace period later if it still is.
-- `gen` counts the events that queued it, so a look that raced with a new event leaves the
-- entry for the next look instead of dropping it.
CREATE TABLE gc_queue (
    digest    TEXT PRIMARY KEY,
    due_at    INTEGER NOT NULL,
    marked_at INTEGER,
    gen       INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX gc_queue_due ON gc_queue(due_at) WHERE marked_at IS NULL;
CREATE INDEX gc_queue_marked ON gc_queue(marked_at) WHERE marked_at IS NOT NULL;

-- An upload about to publish a blob's bytes holds a pin on its digest until the blob is recorded
-- (or the upload is removed): a sweep never deletes a pinned blob, and a pin is refused while a
-- sweep is deleting it.
CREATE TABLE blob_pins (
    digest    TEXT NOT NULL,
    upload_id TEXT NOT NULL,
    pinned_at INTEGER NOT NULL,
    PRIMARY KEY (digest, upload_id)
);
CREATE INDEX blob_pins_upload ON blob_pins(upload_id);

-- Blobs that predate collection: look at each of them once.
INSERT INTO gc_queue (digest, due_at) SELECT digest, 0 FROM blobs;

-- Undelete: a deleted manifest keeps its row (and its references, so collection keeps its blobs)
-- with deleted_at set until the undelete window passes; then it is purged. Reads ignore such rows.
ALTER TABLE manifests ADD COLUMN deleted_at INTEGER;
CREATE INDEX manifests_deleted ON manifests(deleted_at) WHERE deleted_at IS NOT NULL;

-- Tags removed by a tag or manifest deletion, restorable within the undelete window.
CREATE TABLE deleted_tags (
    repo_id    INTEGER NOT NULL REFERENCES repositories(id),
    name       TEXT NOT NULL,
    digest     TEXT NOT NULL,
    deleted_at INTEGER NOT NULL
);
CREATE INDEX deleted_tags_name ON deleted_tags(repo_id, name, deleted_at);
CREATE INDEX deleted_tags_age ON deleted_tags(deleted_at);

-- Retention: when a manifest was last pulled (flushed in batches, so approximate to a minute).
ALTER TABLE manifests ADD COLUMN last_pulled_at INTEGER;
