-- The audit log: append-only, each entry chained to the one before by hash.
-- hash = sha256(prev_hash || canonical encoding of the entry), see bonded-meta's audit module.
CREATE TABLE audit_log (
    seq       INTEGER PRIMARY KEY,
    at        INTEGER NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    repo      TEXT NOT NULL DEFAULT '',
    target    TEXT NOT NULL DEFAULT '',
    source    TEXT NOT NULL DEFAULT '',
    outcome   TEXT NOT NULL,
    detail    TEXT NOT NULL DEFAULT '',
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
);
CREATE INDEX audit_log_repo ON audit_log(repo, seq);
CREATE INDEX audit_log_actor ON audit_log(actor, seq);
CREATE INDEX audit_log_at ON audit_log(at);

-- One row: the end of the chain. Appends lock it, so appends from several nodes serialize.
CREATE TABLE audit_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  INTEGER NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '');

-- Signed statements "the chain up to seq ends in hash", made periodically with a token signing key.
CREATE TABLE audit_checkpoints (
    seq       INTEGER PRIMARY KEY,
    hash      TEXT NOT NULL,
    kid       TEXT NOT NULL,
    signature TEXT NOT NULL,
    at        INTEGER NOT NULL
);
