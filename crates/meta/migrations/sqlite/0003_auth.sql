-- Access control: accounts (people and robots), role grants per namespace, token signing keys.
-- Times are Unix milliseconds.

-- Secrets are stored only as argon2 PHC strings. A robot has an expiry; revoking sets revoked_at
-- (the row stays, so the name cannot be silently reused and the audit log keeps meaning).
CREATE TABLE accounts (
    name         TEXT PRIMARY KEY,
    kind         TEXT NOT NULL CHECK (kind IN ('user', 'robot')),
    secret_hash  TEXT NOT NULL,
    system_admin INTEGER NOT NULL DEFAULT 0,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER,
    revoked_at   INTEGER
);

-- `subject` is an account name, or `anonymous` for requests without credentials.
-- `namespace` is a pattern: `team-a/` (prefix), `ml/**` (glob) or an exact repository name.
CREATE TABLE grants (
    namespace  TEXT NOT NULL,
    subject    TEXT NOT NULL,
    role       TEXT NOT NULL CHECK (role IN ('reader', 'developer', 'maintainer', 'admin')),
    created_at INTEGER NOT NULL,
    PRIMARY KEY (namespace, subject)
);
CREATE INDEX grants_subject ON grants(subject);

-- Token signing keys, shared by every node. The newest unretired key signs; retired keys still
-- verify until retired_at + token lifetime.
CREATE TABLE signing_keys (
    kid         TEXT PRIMARY KEY,
    algorithm   TEXT NOT NULL,
    private_key BLOB NOT NULL,
    public_key  BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    retired_at  INTEGER
);
