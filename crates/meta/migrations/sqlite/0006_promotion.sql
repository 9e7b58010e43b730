-- Promotion between environments. Times are Unix milliseconds.
-- An environment's pointer is the tag of that name in the repository; every move of it (promotion
-- or rollback) is one row here, written in the same transaction that moves the tag.
CREATE TABLE env_history (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    repo        TEXT NOT NULL,
    environment TEXT NOT NULL,
    digest      TEXT NOT NULL,
    previous    TEXT,
    action      TEXT NOT NULL CHECK (action IN ('promote', 'rollback')),
    actor       TEXT NOT NULL,
    from_env    TEXT,
    gates       TEXT NOT NULL DEFAULT '[]',
    note        TEXT NOT NULL DEFAULT '',
    attestation TEXT,
    at          INTEGER NOT NULL
);
CREATE INDEX env_history_env ON env_history(repo, environment, id);
CREATE INDEX env_history_digest ON env_history(repo, digest);

-- Approvals of an artifact for an environment, one per approver; `role` is the approver's role on
-- the repository when approving.
CREATE TABLE approvals (
    repo        TEXT NOT NULL,
    digest      TEXT NOT NULL,
    environment TEXT NOT NULL,
    actor       TEXT NOT NULL,
    role        TEXT NOT NULL,
    comment     TEXT NOT NULL DEFAULT '',
    at          INTEGER NOT NULL,
    PRIMARY KEY (repo, digest, environment, actor)
);

-- Deployments reported by deploy systems; `expected` is what the environment pointed at when the
-- report arrived.
CREATE TABLE deployments (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    repo        TEXT NOT NULL,
    environment TEXT NOT NULL,
    target      TEXT NOT NULL,
    digest      TEXT NOT NULL,
    status      TEXT NOT NULL,
    expected    TEXT,
    actor       TEXT NOT NULL,
    at          INTEGER NOT NULL
);
CREATE INDEX deployments_repo ON deployments(repo, id);

-- Canary analysis verdicts recorded against a digest.
CREATE TABLE canary_verdicts (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    repo        TEXT NOT NULL,
    digest      TEXT NOT NULL,
    environment TEXT,
    verdict     TEXT NOT NULL CHECK (verdict IN ('pass', 'marginal', 'fail')),
    score       REAL NOT NULL,
    report      TEXT NOT NULL,
    actor       TEXT NOT NULL,
    at          INTEGER NOT NULL
);
CREATE INDEX canary_verdicts_digest ON canary_verdicts(repo, digest, id);

-- Keys the registry itself signs with (promotion attestations), one per purpose, shared by every
-- node. The first node to need one creates it.
CREATE TABLE registry_keys (
    purpose     TEXT PRIMARY KEY,
    key_id      TEXT NOT NULL,
    private_pem TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
