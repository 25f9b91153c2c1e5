-- A certificate replaced by another (a renewal, a new version of a named certificate, the
-- server's own certificates issued anew) is `superseded`: listed, but neither live nor
-- counted in expiry alerts.
ALTER TABLE certificates ADD COLUMN superseded_by TEXT;
CREATE INDEX certificates_by_renewed_from ON certificates (renewed_from)
    WHERE renewed_from IS NOT NULL;

-- Renewals recorded before: the newest certificate renewing each one replaced it.
UPDATE certificates c SET superseded_by = n.serial
FROM (
    SELECT DISTINCT ON (renewed_from) renewed_from, serial FROM certificates
    WHERE renewed_from IS NOT NULL
    ORDER BY renewed_from, issued_at DESC, serial DESC
) n
WHERE c.serial = n.renewed_from;

-- Certificates the server issued in place of others without recording which: its own
-- (owner `server`), each named certificate's versions (`named:NAME`) and each node's
-- node-scope certificate (`node NODE, NAME version N`). In each group the newest one that
-- is not revoked is current; every earlier one was replaced by it.
WITH grouped AS (
    SELECT serial, FIRST_VALUE(serial) OVER (
        PARTITION BY subject, role,
            CASE WHEN owner LIKE 'node %' THEN split_part(owner, ' version ', 1) ELSE owner END
        ORDER BY issued_at DESC, serial DESC) AS newest
    FROM certificates
    WHERE revoked_at IS NULL AND superseded_by IS NULL
      AND (owner = 'server' OR owner LIKE 'named:%' OR owner LIKE 'node %, % version %')
)
UPDATE certificates c SET superseded_by = g.newest
FROM grouped g
WHERE c.serial = g.serial AND g.serial <> g.newest;
