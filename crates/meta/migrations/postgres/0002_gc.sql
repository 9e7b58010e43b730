-- Online garbage collection (docs/gc.md). Times are Unix milliseconds.

-- Set when a sweep has committed to deleting the blob's bytes; the row goes once they are gone.
-- A blob in this state is invisible: it has no links, cannot be linked, mounted or pinned.
ALTER TABLE blobs ADD COLUMN deleting_at BIGINT;

-- Blobs that may have become unreferenced, and when to look at them. Every event that can leave
-- a blob unreferenced (a new link, an unlink, a manifest purged) queues it, so collection looks at
-- what changed instead of walking every blob. `marked_at` is set once a look found it unreferenced;
-- it is swept a grace period later if it still is.
-- `gen` counts the events that queued it, so a look that raced with a new event leaves the
-- entry for the next look instead of dropping it.
CREATE TABLE gc_queue (
    digest    TEXT PRIMARY KEY,
    due_at    BIGINT NOT NULL,
    marked_at BIGINT,
    gen       BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX gc_queue_due ON gc_queue(due_at) WHERE marked_at IS NULL;
CREATE INDEX gc_queue_marked ON gc_queue(marked_at) WHERE marked_at IS NOT NULL;

-- An upload about to publish a blob's bytes holds a pin on its digest until the blob is recorded
-- (or the upload is removed): a sweep never deletes a pinned blob, and a pin is refused while a
-- sweep is deleting it.
CREATE TABLE blob_pins (
    digest    TEXT NOT NULL,
    upload_id TEXT NOT NULL,
    pinned_at BIGINT NOT NULL,
    PRIMARY KEY (digest, upload_id)
);
CREATE INDEX blob_pins_upload ON blob_pins(upload_id);

-- Blobs that predate collection: look at each of them once.
INSERT INTO gc_queue (digest, due_at) SELECT digest, 0 FROM blobs;
