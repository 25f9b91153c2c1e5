-- Evergreen's datastore. Times are seconds since 1970 (UTC).

-- Cluster facts: the key-derivation salt, the secret check, initialisation marker.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value BLOB NOT NULL
);

-- The cluster CAs: root-ca, server-ca, client-ca, peer-ca.
CREATE TABLE cas (
    name       TEXT PRIMARY KEY,
    -- The CA certificate first, then the certificates above it (PEM).
    bundle_pem TEXT NOT NULL,
    -- The private key in an AES-256-GCM envelope; NULL when the key is kept offline.
    sealed_key BLOB,
    -- Number of the last CRL published; CRL numbers only grow.
    crl_number INTEGER NOT NULL DEFAULT 0,
    updated_at INTEGER NOT NULL
);

-- Every certificate Evergreen has issued.
CREATE TABLE certificates (
    serial            TEXT PRIMARY KEY,          -- lowercase hex
    sha256            TEXT NOT NULL UNIQUE,      -- of the DER, lowercase hex
    subject           TEXT NOT NULL,
    sans              TEXT NOT NULL,             -- comma-separated, "DNS:a,IP:10.0.0.1"
    profile           TEXT NOT NULL,             -- server | client | peer
    role              TEXT NOT NULL,             -- admin | node | app | server
    issuer            TEXT NOT NULL,             -- CA name
    owner             TEXT NOT NULL,             -- who asked: token:<id>, renewal of <serial>, server
    not_before        INTEGER NOT NULL,
    not_after         INTEGER NOT NULL,
    issued_at         INTEGER NOT NULL,
    renewed_from      TEXT,
    revoked_at        INTEGER,
    revocation_reason TEXT,
    der               BLOB NOT NULL
);
CREATE INDEX certificates_by_expiry ON certificates (not_after, serial);
CREATE INDEX certificates_revoked_by_issuer ON certificates (issuer, revoked_at) WHERE revoked_at IS NOT NULL;

-- Join tokens. Only a hash of the secret is kept.
CREATE TABLE tokens (
    id            TEXT PRIMARY KEY,
    secret_sha256 TEXT NOT NULL,
    role          TEXT NOT NULL,                 -- node | app
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER,                       -- NULL: never
    uses          INTEGER NOT NULL DEFAULT 0,
    description   TEXT NOT NULL DEFAULT ''
);

-- Every change and every refusal.
CREATE TABLE audit (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      INTEGER NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    target  TEXT NOT NULL,
    outcome TEXT NOT NULL,                       -- ok | refused
    detail  TEXT NOT NULL
);
