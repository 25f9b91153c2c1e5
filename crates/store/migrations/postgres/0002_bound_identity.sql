-- Identity is proven, not claimed: a join token names what it may enroll and how often,
-- a node's certificates may name only the addresses an admin allowed, and a named
-- certificate may restrict its names.

-- NULL max_uses: any number of uses (tokens made before this version).
ALTER TABLE tokens ADD COLUMN max_uses BIGINT;
-- A node token names one node, or a pattern of names ('worker-*').
ALTER TABLE tokens ADD COLUMN node TEXT;
ALTER TABLE tokens ADD COLUMN node_pattern TEXT;
-- An app token names the subject it may enroll; its CN may hold '*'.
ALTER TABLE tokens ADD COLUMN subject TEXT;
-- Node tokens made before may enroll any name that is not enrolled yet.
UPDATE tokens SET node_pattern = '*' WHERE role = 'node';
-- The reusable node token that first start printed never expired: it is retired.
UPDATE tokens SET expires_at = EXTRACT(EPOCH FROM now())::BIGINT
    WHERE description = 'node join token made at first start' AND expires_at IS NULL;

-- What the server knows of a node beyond its certificates.
CREATE TABLE nodes (
    name       TEXT PRIMARY KEY,
    addresses  TEXT NOT NULL DEFAULT '',   -- comma-separated IPs an admin allowed
    updated_at BIGINT NOT NULL
);

-- Enrollment checks that no live certificate holds the subject it issues.
CREATE INDEX certificates_by_subject ON certificates (subject);

-- Names a named certificate may carry: DNS suffixes and IP ranges (comma-separated; empty: any).
ALTER TABLE named_certificates ADD COLUMN allowed_dns TEXT NOT NULL DEFAULT '';
ALTER TABLE named_certificates ADD COLUMN allowed_cidrs TEXT NOT NULL DEFAULT '';
