-- Named certificates: one definition per name, a version per change, and what each
-- node has installed.

CREATE TABLE named_certificates (
    name        TEXT PRIMARY KEY,
    scope       TEXT NOT NULL,               -- cluster | node
    kind        TEXT NOT NULL,               -- selfsigned | provided | secret
    label       TEXT NOT NULL DEFAULT '',
    internal    INTEGER NOT NULL DEFAULT 0,
    usage       TEXT NOT NULL,               -- server | client | peer
    sans        TEXT NOT NULL DEFAULT '',    -- comma-separated; node scope may hold {node}, {ip}
    nodes       TEXT NOT NULL DEFAULT '',    -- comma-separated node names; empty: every node
    secret_path TEXT,                        -- kind secret: the directory read
    secret_keys TEXT NOT NULL DEFAULT 'cert,key,cacert',
    version     INTEGER NOT NULL DEFAULT 0,  -- the current version; 0: none yet
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE named_versions (
    name        TEXT NOT NULL REFERENCES named_certificates (name) ON DELETE CASCADE,
    version     INTEGER NOT NULL,
    -- Cluster scope: the certificate chain and its sealed key. Node scope: NULL (each
    -- node makes its own key; the version only tells nodes to re-issue).
    chain_pem   TEXT,
    sealed_key  BLOB,
    ca_pem      TEXT,                        -- what clients should trust
    fingerprint TEXT,
    not_after   INTEGER,
    reason      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (name, version)
);

CREATE TABLE acknowledgements (
    node        TEXT NOT NULL,
    name        TEXT NOT NULL,
    version     INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    at          INTEGER NOT NULL,
    PRIMARY KEY (node, name)
);
