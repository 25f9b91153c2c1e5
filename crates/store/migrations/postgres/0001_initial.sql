-- Evergreen's datastore on PostgreSQL, shared by every server replica. Times are seconds
-- since 1970 (UTC). The same tables as the embedded SQLite datastore.

-- Cluster facts: the key-derivation salt, the secret check, initialisation marker.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value BYTEA NOT NULL
);

-- The cluster revision agents watch; one row, advanced under its row lock so concurrent
-- writers from several replicas get distinct, ordered revisions.
CREATE TABLE revision (
    only_row BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (only_row),
    value    BIGINT NOT NULL
);
INSERT INTO revision (value) VALUES (0);

-- The cluster CAs: root-ca, server-ca, client-ca, peer-ca, and retired ones
-- (<role>@<sha256 prefix>).
CREATE TABLE cas (
    name       TEXT PRIMARY KEY,
    bundle_pem TEXT NOT NULL,                    -- the CA first, then those above it
    sealed_key BYTEA,                            -- AES-256-GCM envelope; NULL: kept offline
    crl_number BIGINT NOT NULL DEFAULT 0,        -- the last CRL number; only grows
    updated_at BIGINT NOT NULL
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
    owner             TEXT NOT NULL,
    not_before        BIGINT NOT NULL,
    not_after         BIGINT NOT NULL,
    issued_at         BIGINT NOT NULL,
    renewed_from      TEXT,
    revoked_at        BIGINT,
    revocation_reason TEXT,
    der               BYTEA NOT NULL
);
CREATE INDEX certificates_by_expiry ON certificates (not_after, serial);
CREATE INDEX certificates_revoked_by_issuer ON certificates (issuer, revoked_at)
    WHERE revoked_at IS NOT NULL;

-- Join tokens. Only a hash of the secret is kept.
CREATE TABLE tokens (
    id            TEXT PRIMARY KEY,
    secret_sha256 TEXT NOT NULL,
    role          TEXT NOT NULL,                 -- node | app
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT,                        -- NULL: never
    uses          BIGINT NOT NULL DEFAULT 0,
    description   TEXT NOT NULL DEFAULT ''
);

-- Every change and every refusal.
CREATE TABLE audit (
    id      BIGSERIAL PRIMARY KEY,
    at      BIGINT NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    target  TEXT NOT NULL,
    outcome TEXT NOT NULL,                       -- ok | refused
    detail  TEXT NOT NULL
);

-- Named certificates: one definition per name, a version per change, and what each
-- node has installed.
CREATE TABLE named_certificates (
    name        TEXT PRIMARY KEY,
    scope       TEXT NOT NULL,                   -- cluster | node
    kind        TEXT NOT NULL,                   -- selfsigned | provided | secret
    label       TEXT NOT NULL DEFAULT '',
    internal    BOOLEAN NOT NULL DEFAULT FALSE,
    usage       TEXT NOT NULL,                   -- server | client | peer
    sans        TEXT NOT NULL DEFAULT '',
    nodes       TEXT NOT NULL DEFAULT '',
    secret_path TEXT,
    secret_keys TEXT NOT NULL DEFAULT 'cert,key,cacert',
    version     BIGINT NOT NULL DEFAULT 0,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE named_versions (
    name        TEXT NOT NULL REFERENCES named_certificates (name) ON DELETE CASCADE,
    version     BIGINT NOT NULL,
    chain_pem   TEXT,
    sealed_key  BYTEA,
    ca_pem      TEXT,
    fingerprint TEXT,
    not_after   BIGINT,
    reason      TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (name, version)
);

CREATE TABLE acknowledgements (
    node        TEXT NOT NULL,
    name        TEXT NOT NULL,
    version     BIGINT NOT NULL,
    fingerprint TEXT NOT NULL,
    at          BIGINT NOT NULL,
    PRIMARY KEY (node, name)
);

-- The CRLs last published, one per CA that signs them.
CREATE TABLE crls (
    name TEXT PRIMARY KEY,
    der  BYTEA NOT NULL
);
