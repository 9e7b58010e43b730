-- Supply chain: the trust store, PostgreSQL flavour of migrations/sqlite/0005_trust.sql.
-- Public keys per namespace (first component of a repository name), grouped in named key sets
-- (e.g. `release`). Times are Unix milliseconds; a NULL bound is open. Revocation applies to the
-- key in every set of its namespace.
CREATE TABLE trusted_keys (
    namespace  TEXT COLLATE "C" NOT NULL,
    key_set    TEXT COLLATE "C" NOT NULL,
    key_id     TEXT COLLATE "C" NOT NULL,
    algorithm  TEXT NOT NULL,
    public_key TEXT NOT NULL,
    not_before BIGINT,
    not_after  BIGINT,
    revoked_at BIGINT,
    comment    TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    PRIMARY KEY (namespace, key_set, key_id)
);
CREATE INDEX trusted_keys_key ON trusted_keys(namespace, key_id);
