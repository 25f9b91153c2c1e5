-- The CRLs last published, one per CA that signs them: a restarted server serves them
-- again instead of signing anew.
CREATE TABLE crls (
    name       TEXT PRIMARY KEY,               -- the CA: server-ca, client-ca@<sha>, …
    der        BLOB NOT NULL
);
