-- Core registry metadata, PostgreSQL flavour of migrations/sqlite/0001_core.sql. Times are Unix
-- milliseconds. Name columns use COLLATE "C" so listings and `last` pagination compare bytewise,
-- as SQLite does, whatever the database's default collation.
CREATE TABLE repositories (
    id         BIGSERIAL PRIMARY KEY,
    name       TEXT COLLATE "C" NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

-- Every blob whose bytes were verified and published, whichever repository pushed it.
CREATE TABLE blobs (
    digest     TEXT PRIMARY KEY,
    size       BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

-- A blob is visible in a repository only through a link (push, mount or manifest reference).
CREATE TABLE repo_blobs (
    repo_id    BIGINT NOT NULL REFERENCES repositories(id),
    digest     TEXT NOT NULL REFERENCES blobs(digest),
    created_at BIGINT NOT NULL,
    PRIMARY KEY (repo_id, digest)
);
CREATE INDEX repo_blobs_digest ON repo_blobs(digest);

CREATE TABLE manifests (
    repo_id       BIGINT NOT NULL REFERENCES repositories(id),
    digest        TEXT NOT NULL,
    media_type    TEXT NOT NULL,
    artifact_type TEXT,
    subject       TEXT,
    annotations   TEXT,
    size          BIGINT NOT NULL,
    content       BYTEA NOT NULL,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (repo_id, digest)
);
CREATE INDEX manifests_subject ON manifests(repo_id, subject) WHERE subject IS NOT NULL;

-- What a manifest points at: blobs (config, layers) and child manifests (index entries).
CREATE TABLE manifest_refs (
    repo_id  BIGINT NOT NULL,
    manifest TEXT NOT NULL,
    child    TEXT NOT NULL,
    kind     TEXT NOT NULL CHECK (kind IN ('blob', 'manifest')),
    PRIMARY KEY (repo_id, manifest, child, kind),
    FOREIGN KEY (repo_id, manifest) REFERENCES manifests(repo_id, digest) ON DELETE CASCADE
);
CREATE INDEX manifest_refs_child ON manifest_refs(child);

CREATE TABLE tags (
    repo_id    BIGINT NOT NULL REFERENCES repositories(id),
    name       TEXT COLLATE "C" NOT NULL,
    digest     TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (repo_id, name),
    FOREIGN KEY (repo_id, digest) REFERENCES manifests(repo_id, digest)
);
CREATE INDEX tags_digest ON tags(repo_id, digest);

-- Upload sessions. `size` is the number of bytes durably staged; `state` is the blob backend's
-- opaque cursor (e.g. an S3 multipart id and its parts), so any node can continue the upload.
CREATE TABLE uploads (
    id         TEXT PRIMARY KEY,
    repo       TEXT NOT NULL,
    size       BIGINT NOT NULL DEFAULT 0,
    state      TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX uploads_updated ON uploads(updated_at);
