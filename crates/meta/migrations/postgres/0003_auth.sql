-- Access control: accounts (people and robots), role grants per namespace, token signing keys.
-- Times are Unix milliseconds.

-- Secrets are stored only as argon2 PHC strings. A robot has an expiry; revoking sets revoked_at
-- (the row stays, so the name cannot be silently reused and the audit log keeps meaning).
CREATE TABLE accounts (
    name         TEXT COLLATE "C" PRIMARY KEY,
    kind         TEXT NOT NULL CHECK (kind IN ('user', 'robot')),
    secret_hash  TEXT NOT NULL,
    system_admin BOOLEAN NOT NULL DEFAULT FALSE,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT,
    revoked_at   BIGINT
);

-- `subject` is an account name, or `anonymous` for requests without credentials.
-- `namespace` is a pattern: `team-a/` (prefix), `ml/**` (glob) or an exact repository name.
CREATE TABLE grants (
    namespace  TEXT COLLATE "C" NOT NULL,
    subject    TEXT NOT NULL,
    role       TEXT NOT NULL CHECK (role IN ('reader', 'developer', 'maintainer', 'admin')),
    created_at BIGINT NOT NULL,
    PRIMARY KEY (namespace, subject)
);
CREATE INDEX grants_subject ON grants(subject);

-- Token signing keys, shared by every node. The newest unretired key signs; retired keys still
-- verify until retired_at + token lifetime.
CREATE TABLE signing_keys (
    kid         TEXT COLLATE "C" PRIMARY KEY,
    algorithm   TEXT NOT NULL,
    private_key BYTEA NOT NULL,
    public_key  BYTEA NOT NULL,
    created_at  BIGINT NOT NULL,
    retired_at  BIGINT
);
