-- Supply chain: the trust store. Public keys per namespace (first component of a repository
-- name), grouped in named key sets (e.g. `release`). Times are Unix milliseconds; a NULL bound
-- is open. Revocation applies to the key in every set of its namespace.
CREATE TABLE trusted_keys (
    namespace  TEXT NOT NULL,
    key_set    TEXT NOT NULL,
    key_id     TEXT NOT NULL,
    algorithm  TEXT NOT NULL,
    public_key TEXT NOT NULL,
    not_before INTEGER,
    not_after  INTEGER,
    revoked_at INTEGER,
    comment    TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    PRIMARY KEY (namespace, key_set, key_id)
);
CREATE INDEX trusted_keys_key ON trusted_keys(namespace, key_id);
