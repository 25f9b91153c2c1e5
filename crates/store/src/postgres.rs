//! The shared datastore: one PostgreSQL database behind every server replica.
//!
//! Consistency between replicas comes from the database, not from the processes: primary
//! keys keep serials, certificate hashes and named-certificate versions unique, row locks
//! (`SELECT … FOR UPDATE`, `UPDATE … RETURNING`) make token use counts, revocations, CRL
//! numbers and the cluster revision atomic, and advisory locks let one replica at a time
//! run a cluster-wide [`Job`]. Writes other replicas must see are announced with
//! `pg_notify` inside their transaction, so the notice goes out exactly when they commit.
use std::time::Duration;

use async_trait::async_trait;
use sqlx::Connection as _;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPool, PgPoolOptions};
use sqlx::{Postgres, Row};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::locks::LocalLocks;
use crate::rows;
use crate::{
    Acknowledgement, ActiveCount, AuditEvent, CaRecord, CertificateRecord, Change, EnrollOutcome,
    Enrollment, Initialization, InventoryQuery, Job, JobLock, NamedChange, NamedRecord,
    NamedVersion, NodeRecord, Result, RevokeOutcome, RevokedSerial, Rotation, Store, StoreError,
    TokenRecord, TokenUse, Transaction,
};

/// Schema versions, applied in order.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/postgres/0001_initial.sql")),
    (
        2,
        include_str!("../migrations/postgres/0002_bound_identity.sql"),
    ),
    (
        3,
        include_str!("../migrations/postgres/0003_superseded.sql"),
    ),
    (4, include_str!("../migrations/postgres/0004_served.sql")),
];

/// The channel writes are announced on.
const CHANNEL: &str = "evergreen";

const INITIALIZED: &str = "initialized";

/// Advisory-lock keys outside [`Job`]'s: schema migration and first start.
const MIGRATION_LOCK: i64 = 0x4556_4780;
const INITIALIZATION_LOCK: i64 = 0x4556_4781;

/// Connections per replica. Waiting for a job lock costs none (see [`crate::JobLock`]).
const MAX_CONNECTIONS: u32 = 16;

pub struct PostgresStore {
    pool: PgPool,
    /// Names this store in its notices, so it does not hear its own changes: the writer
    /// has applied them already.
    origin: String,
    locks: LocalLocks,
    changes: broadcast::Sender<Change>,
    listener: JoinHandle<()>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: never printed.
        f.debug_struct("PostgresStore").finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/database`),
    /// brings its schema up to date and starts listening for other replicas' changes.
    pub async fn connect(url: &str) -> Result<Self> {
        let options: PgConnectOptions = url.parse().map_err(|e| {
            StoreError::Invalid(format!(
                "the datastore address is not a PostgreSQL URL (postgres://user:password@host:port/database): {e}"
            ))
        })?;
        let options = options.application_name("evergreen");
        // One connection first: a pool retries until its timeout and then reports only
        // that, where this says what is wrong (refused, unknown host, bad password).
        PgConnection::connect_with(&options).await?.close().await?;
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await?;
        migrate(&pool).await?;
        // Listening starts before anything is read, so no change is missed in between.
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.listen(CHANNEL).await?;
        let (changes, _) = broadcast::channel(256);
        let origin = origin()?;
        Ok(PostgresStore {
            listener: tokio::spawn(listen(listener, changes.clone(), origin.clone())),
            origin,
            pool,
            locks: LocalLocks::default(),
            changes,
        })
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

/// Forwards notifications; a lost connection is re-established by the next receive, and
/// announced as [`Change::Resync`] since notices sent meanwhile are gone.
async fn listen(mut listener: PgListener, changes: broadcast::Sender<Change>, origin: String) {
    loop {
        match listener.try_recv().await {
            Ok(Some(notice)) => {
                let (change, from) = notice.payload().split_once(' ').unwrap_or_default();
                if from != origin {
                    let _ = changes.send(Change::parse(change));
                }
            }
            Ok(None) => {
                let _ = changes.send(Change::Resync);
            }
            Err(_) => {
                // The database is unreachable; try again shortly.
                tokio::time::sleep(Duration::from_secs(1)).await;
                let _ = changes.send(Change::Resync);
            }
        }
    }
}

async fn migrate(pool: &PgPool) -> Result<()> {
    let mut tx = pool.begin().await?;
    // Replicas starting together migrate one at a time.
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *tx)
        .await?;
    sqlx::raw_sql("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
        .execute(&mut *tx)
        .await?;
    let current: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM schema_version")
        .fetch_one(&mut *tx)
        .await?;
    let current = current.unwrap_or(0);
    let newest = MIGRATIONS.last().map_or(0, |m| m.0);
    if current > newest {
        return Err(StoreError::Invalid(format!(
            "the datastore has schema version {current}, newer than this evergreen knows ({newest}); run a newer evergreen"
        )));
    }
    for (version, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        sqlx::raw_sql(sql).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO schema_version (version) VALUES ($1)")
            .bind(version)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// A random name for one store's notices.
fn origin() -> Result<String> {
    let mut bytes = [0u8; 8];
    aws_lc_rs::rand::fill(&mut bytes)
        .map_err(|_| StoreError::Invalid("the system random source failed".into()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Announces `change` to every other replica when the surrounding transaction commits;
/// the payload is `<change> <origin>`.
async fn notify(conn: &mut PgConnection, change: Change, origin: &str) -> Result<()> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(format!("{} {origin}", change.as_str()))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

async fn insert_certificate(conn: &mut PgConnection, c: &CertificateRecord) -> Result<()> {
    sqlx::query(
        "INSERT INTO certificates (serial, sha256, subject, sans, profile, role, issuer, owner, \
         not_before, not_after, issued_at, renewed_from, revoked_at, revocation_reason, der) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
    )
    .bind(&c.serial)
    .bind(&c.sha256)
    .bind(&c.subject)
    .bind(c.sans.join(","))
    .bind(&c.profile)
    .bind(&c.role)
    .bind(&c.issuer)
    .bind(&c.owner)
    .bind(c.not_before)
    .bind(c.not_after)
    .bind(c.issued_at)
    .bind(&c.renewed_from)
    .bind(c.revoked_at)
    .bind(&c.revocation_reason)
    .bind(&c.der)
    .execute(&mut *conn)
    .await?;
    if let Some(renewed) = &c.renewed_from {
        sqlx::query(
            "UPDATE certificates SET superseded_by = $1 WHERE serial = $2 AND superseded_by IS NULL",
        )
        .bind(&c.serial)
        .bind(renewed)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

async fn put_ca(conn: &mut PgConnection, ca: &CaRecord) -> Result<()> {
    sqlx::query(
        "INSERT INTO cas (name, bundle_pem, sealed_key, updated_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (name) DO UPDATE SET bundle_pem = excluded.bundle_pem, \
         sealed_key = excluded.sealed_key, updated_at = excluded.updated_at",
    )
    .bind(&ca.name)
    .bind(&ca.bundle_pem)
    .bind(&ca.sealed_key)
    .bind(ca.updated_at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn put_meta(conn: &mut PgConnection, key: &str, value: &[u8]) -> Result<()> {
    sqlx::query(
        "INSERT INTO meta (key, value) VALUES ($1, $2) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )
    .bind(key)
    .bind(value)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Advances the cluster revision and announces it.
async fn next_revision(conn: &mut PgConnection, origin: &str) -> Result<i64> {
    let revision = sqlx::query_scalar("UPDATE revision SET value = value + 1 RETURNING value")
        .fetch_one(&mut *conn)
        .await?;
    notify(conn, Change::Revision, origin).await?;
    Ok(revision)
}

async fn insert_token(conn: &mut PgConnection, t: &TokenRecord) -> Result<()> {
    sqlx::query(
        "INSERT INTO tokens (id, secret_sha256, role, created_at, expires_at, uses, max_uses, \
         node, node_pattern, subject, description) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(&t.id)
    .bind(&t.secret_sha256)
    .bind(&t.role)
    .bind(t.created_at)
    .bind(t.expires_at)
    .bind(t.uses)
    .bind(t.max_uses)
    .bind(&t.node)
    .bind(&t.node_pattern)
    .bind(&t.subject)
    .bind(&t.description)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn audit(conn: &mut PgConnection, e: &AuditEvent) -> Result<()> {
    sqlx::query(
        "INSERT INTO audit (at, actor, action, target, outcome, detail) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(e.at)
    .bind(&e.actor)
    .bind(&e.action)
    .bind(&e.target)
    .bind(&e.outcome)
    .bind(&e.detail)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn rotate_in(conn: &mut PgConnection, rotation: &Rotation, origin: &str) -> Result<i64> {
    for (ca, retired_as) in &rotation.cas {
        let kept = sqlx::query(
            "INSERT INTO cas (name, bundle_pem, sealed_key, crl_number, updated_at) \
                 SELECT $1, bundle_pem, sealed_key, crl_number, $2 FROM cas WHERE name = $3",
        )
        .bind(retired_as)
        .bind(ca.updated_at)
        .bind(&ca.name)
        .execute(&mut *conn)
        .await?;
        if kept.rows_affected() != 1 {
            return Err(StoreError::Invalid(format!(
                "no current CA named {} to rotate",
                ca.name
            )));
        }
        put_ca(conn, ca).await?;
    }
    for (key, value) in &rotation.meta {
        put_meta(conn, key, value).await?;
    }
    audit(conn, &rotation.event).await?;
    let revision = next_revision(conn, origin).await?;
    Ok(revision)
}

async fn next_crl_number_in(conn: &mut PgConnection, ca: &str) -> Result<u64> {
    let n: Option<i64> = sqlx::query_scalar(
        "UPDATE cas SET crl_number = crl_number + 1 WHERE name = $1 RETURNING crl_number",
    )
    .bind(ca)
    .fetch_optional(&mut *conn)
    .await?;
    let n = n.ok_or_else(|| StoreError::Invalid(format!("no CA named {ca}")))?;
    u64::try_from(n).map_err(|_| StoreError::Invalid(format!("CRL number {n} of {ca}")))
}

async fn save_named_in(
    conn: &mut PgConnection,
    changes: &[NamedChange],
    origin: &str,
) -> Result<i64> {
    for change in changes {
        let r = &change.record;
        sqlx::query(
                "INSERT INTO named_certificates (name, scope, kind, label, internal, usage, sans, nodes, \
                 secret_path, secret_keys, version, created_at, updated_at, allowed_dns, allowed_cidrs) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
                 ON CONFLICT (name) DO UPDATE SET scope = excluded.scope, kind = excluded.kind, \
                 label = excluded.label, internal = excluded.internal, usage = excluded.usage, \
                 sans = excluded.sans, nodes = excluded.nodes, secret_path = excluded.secret_path, \
                 secret_keys = excluded.secret_keys, version = excluded.version, \
                 updated_at = excluded.updated_at, allowed_dns = excluded.allowed_dns, \
                 allowed_cidrs = excluded.allowed_cidrs",
            )
            .bind(&r.name)
            .bind(&r.scope)
            .bind(&r.kind)
            .bind(&r.label)
            .bind(r.internal)
            .bind(&r.usage)
            .bind(r.sans.join(","))
            .bind(r.nodes.join(","))
            .bind(&r.secret_path)
            .bind(r.secret_keys.join(","))
            .bind(r.version)
            .bind(r.created_at)
            .bind(r.updated_at)
            .bind(r.allowed_dns.join(","))
            .bind(r.allowed_cidrs.join(","))
            .execute(&mut *conn)
            .await?;
        if let Some(v) = &change.new_version {
            sqlx::query(
                "INSERT INTO named_versions (name, version, chain_pem, sealed_key, ca_pem, \
                     fingerprint, not_after, reason, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(&v.name)
            .bind(v.version)
            .bind(&v.chain_pem)
            .bind(&v.sealed_key)
            .bind(&v.ca_pem)
            .bind(&v.fingerprint)
            .bind(v.not_after)
            .bind(&v.reason)
            .bind(v.created_at)
            .execute(&mut *conn)
            .await?;
        }
    }
    let revision = next_revision(conn, origin).await?;
    Ok(revision)
}

async fn put_crls_in(
    conn: &mut PgConnection,
    crls: &[(String, Vec<u8>)],
    origin: &str,
) -> Result<()> {
    sqlx::query("DELETE FROM crls").execute(&mut *conn).await?;
    for (name, der) in crls {
        sqlx::query("INSERT INTO crls (name, der) VALUES ($1, $2)")
            .bind(name)
            .bind(der)
            .execute(&mut *conn)
            .await?;
    }
    notify(conn, Change::Crls, origin).await?;
    Ok(())
}

async fn initialize_in(conn: &mut PgConnection, init: &Initialization) -> Result<()> {
    // Two replicas starting on an empty database: the second waits, then sees the
    // first's PKI.
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(INITIALIZATION_LOCK)
        .execute(&mut *conn)
        .await?;
    let done: Option<Vec<u8>> = sqlx::query_scalar("SELECT value FROM meta WHERE key = $1")
        .bind(INITIALIZED)
        .fetch_optional(&mut *conn)
        .await?;
    if done.is_some() {
        return Err(StoreError::AlreadyInitialized);
    }
    for (key, value) in &init.meta {
        sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2)")
            .bind(key)
            .bind(value)
            .execute(&mut *conn)
            .await?;
    }
    for ca in &init.cas {
        put_ca(conn, ca).await?;
    }
    for token in &init.tokens {
        insert_token(conn, token).await?;
    }
    for cert in &init.certificates {
        insert_certificate(conn, cert).await?;
    }
    for event in &init.audit {
        audit(conn, event).await?;
    }
    sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2)")
        .bind(INITIALIZED)
        .bind(b"1".as_slice())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// A change's writes on one connection (see [`Transaction`]); its notices reach the other
/// replicas when it commits.
struct PostgresTransaction {
    tx: sqlx::Transaction<'static, Postgres>,
    origin: String,
}

async fn revoke_in(
    conn: &mut PgConnection,
    serial: &str,
    at: i64,
    reason: &str,
) -> Result<RevokeOutcome> {
    let Some(row) = sqlx::query("SELECT * FROM certificates WHERE serial = $1 FOR UPDATE")
        .bind(serial)
        .fetch_optional(&mut *conn)
        .await?
    else {
        return Ok(RevokeOutcome::NotFound);
    };
    let mut record = rows::certificate(&row)?;
    if record.revoked_at.is_some() {
        return Ok(RevokeOutcome::AlreadyRevoked(record));
    }
    sqlx::query(
        "UPDATE certificates SET revoked_at = $1, revocation_reason = $2 WHERE serial = $3",
    )
    .bind(at)
    .bind(reason)
    .bind(serial)
    .execute(&mut *conn)
    .await?;
    record.revoked_at = Some(at);
    record.revocation_reason = Some(reason.to_owned());
    Ok(RevokeOutcome::Revoked(record))
}

async fn revoked_in(conn: &mut PgConnection, issuer: &str) -> Result<Vec<RevokedSerial>> {
    let rows = sqlx::query(
        "SELECT serial, revoked_at, revocation_reason FROM certificates \
         WHERE issuer = $1 AND revoked_at IS NOT NULL ORDER BY revoked_at, serial",
    )
    .bind(issuer)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(RevokedSerial {
                serial: r.try_get("serial")?,
                revoked_at: r.try_get("revoked_at")?,
                reason: r
                    .try_get::<Option<String>, _>("revocation_reason")?
                    .unwrap_or_default(),
            })
        })
        .collect()
}

async fn delete_named_in(conn: &mut PgConnection, name: &str, origin: &str) -> Result<i64> {
    for table in ["acknowledgements", "named_versions", "named_certificates"] {
        sqlx::query(&format!("DELETE FROM {table} WHERE name = $1"))
            .bind(name)
            .execute(&mut *conn)
            .await?;
    }
    next_revision(conn, origin).await
}

#[async_trait]
impl Transaction for PostgresTransaction {
    async fn rotate(&mut self, rotation: &Rotation) -> Result<i64> {
        rotate_in(&mut self.tx, rotation, &self.origin).await
    }

    async fn put_meta(&mut self, key: &str, value: &[u8]) -> Result<()> {
        put_meta(&mut self.tx, key, value).await?;
        notify(&mut self.tx, Change::Meta, &self.origin).await
    }

    async fn next_crl_number(&mut self, ca: &str) -> Result<u64> {
        next_crl_number_in(&mut self.tx, ca).await
    }

    async fn put_crls(&mut self, crls: &[(String, Vec<u8>)]) -> Result<()> {
        put_crls_in(&mut self.tx, crls, &self.origin).await
    }

    async fn insert_certificate(&mut self, cert: &CertificateRecord) -> Result<()> {
        insert_certificate(&mut self.tx, cert).await
    }

    async fn audit(&mut self, event: &AuditEvent) -> Result<()> {
        audit(&mut self.tx, event).await
    }

    async fn save_named(&mut self, changes: &[NamedChange]) -> Result<i64> {
        save_named_in(&mut self.tx, changes, &self.origin).await
    }

    async fn delete_named(&mut self, name: &str) -> Result<i64> {
        delete_named_in(&mut self.tx, name, &self.origin).await
    }

    async fn revoke(&mut self, serial: &str, at: i64, reason: &str) -> Result<RevokeOutcome> {
        revoke_in(&mut self.tx, serial, at, reason).await
    }

    async fn revoked(&mut self, issuer: &str) -> Result<Vec<RevokedSerial>> {
        revoked_in(&mut self.tx, issuer).await
    }

    async fn initialize(&mut self, init: &Initialization) -> Result<()> {
        initialize_in(&mut self.tx, init).await
    }

    async fn commit(self: Box<Self>) -> Result<()> {
        Ok(self.tx.commit().await?)
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn is_initialized(&self) -> Result<bool> {
        Ok(self.get_meta(INITIALIZED).await?.is_some())
    }

    async fn initialize(&self, init: Initialization) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        initialize_in(&mut tx, &init).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(sqlx::query_scalar("SELECT value FROM meta WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn begin(&self) -> Result<Box<dyn Transaction>> {
        Ok(Box::new(PostgresTransaction {
            tx: self.pool.begin().await?,
            origin: self.origin.clone(),
        }))
    }

    async fn put_meta(&self, key: &str, value: &[u8], event: &AuditEvent) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        put_meta(&mut tx, key, value).await?;
        audit(&mut tx, event).await?;
        notify(&mut tx, Change::Meta, &self.origin).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn cas(&self) -> Result<Vec<CaRecord>> {
        let rows =
            sqlx::query("SELECT name, bundle_pem, sealed_key, updated_at FROM cas ORDER BY name")
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(rows::ca).collect()
    }

    async fn put_ca(&self, ca: &CaRecord) -> Result<()> {
        put_ca(&mut *self.pool.acquire().await?, ca).await
    }

    async fn rotate(&self, rotation: &Rotation) -> Result<i64> {
        let mut tx = self.pool.begin().await?;
        let revision = rotate_in(&mut tx, rotation, &self.origin).await?;
        tx.commit().await?;
        Ok(revision)
    }

    async fn next_crl_number(&self, ca: &str) -> Result<u64> {
        next_crl_number_in(&mut *self.pool.acquire().await?, ca).await
    }

    async fn insert_certificate(&self, cert: &CertificateRecord) -> Result<()> {
        insert_certificate(&mut *self.pool.acquire().await?, cert).await
    }

    async fn record_issuance(&self, cert: &CertificateRecord, event: &AuditEvent) -> Result<()> {
        // Concurrent commits from many connections share WAL flushes in PostgreSQL itself.
        let mut tx = self.pool.begin().await?;
        insert_certificate(&mut tx, cert).await?;
        audit(&mut tx, event).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn certificate_by_serial(&self, serial: &str) -> Result<Option<CertificateRecord>> {
        sqlx::query("SELECT * FROM certificates WHERE serial = $1")
            .bind(serial)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(rows::certificate)
            .transpose()
    }

    async fn certificate_by_sha256(&self, sha256: &str) -> Result<Option<CertificateRecord>> {
        sqlx::query("SELECT * FROM certificates WHERE sha256 = $1")
            .bind(sha256)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(rows::certificate)
            .transpose()
    }

    async fn list_certificates(&self, q: &InventoryQuery) -> Result<Vec<CertificateRecord>> {
        let rows = rows::inventory_query::<Postgres>(q)?
            .build()
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(rows::certificate).collect()
    }

    async fn active_counts(&self, now: i64) -> Result<Vec<ActiveCount>> {
        let rows = rows::active_counts_query::<Postgres>(now)
            .build()
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(rows::active_count).collect()
    }

    async fn revoke(&self, serial: &str, at: i64, reason: &str) -> Result<RevokeOutcome> {
        let mut tx = self.pool.begin().await?;
        let outcome = revoke_in(&mut tx, serial, at, reason).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    async fn revoked(&self, issuer: &str) -> Result<Vec<RevokedSerial>> {
        revoked_in(&mut *self.pool.acquire().await?, issuer).await
    }

    async fn insert_token(&self, token: &TokenRecord) -> Result<()> {
        insert_token(&mut *self.pool.acquire().await?, token).await
    }

    async fn token(&self, id: &str) -> Result<Option<TokenRecord>> {
        sqlx::query("SELECT * FROM tokens WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(rows::token)
            .transpose()
    }

    async fn live_tokens(&self, now: i64) -> Result<Vec<TokenRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM tokens WHERE (expires_at IS NULL OR expires_at > $1) \
             AND (max_uses IS NULL OR uses < max_uses) ORDER BY created_at, id",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(rows::token).collect()
    }

    async fn enroll(&self, e: &Enrollment) -> Result<EnrollOutcome> {
        let mut tx = self.pool.begin().await?;
        // The token's row lock orders uses of one token from every replica; the advisory
        // lock on the subject orders enrollments of one subject through different tokens.
        let Some(row) = sqlx::query("SELECT * FROM tokens WHERE id = $1 FOR UPDATE")
            .bind(&e.token_id)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(EnrollOutcome::Refused(TokenUse::Unknown));
        };
        match rows::token(&row)?.check(&e.secret_sha256, e.now) {
            TokenUse::Accepted(_) => {}
            refused => return Ok(EnrollOutcome::Refused(refused)),
        }
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(&e.certificate.subject)
            .execute(&mut *tx)
            .await?;
        let holders = sqlx::query("SELECT * FROM certificates WHERE subject = $1")
            .bind(&e.certificate.subject)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(rows::certificate)
            .collect::<Result<Vec<_>>>()?;
        if let Some(holder) = rows::conflicting_holder(holders, &e.exclusive_of, e.now) {
            return Ok(EnrollOutcome::SubjectTaken(Box::new(holder)));
        }
        sqlx::query("UPDATE tokens SET uses = uses + 1 WHERE id = $1")
            .bind(&e.token_id)
            .execute(&mut *tx)
            .await?;
        insert_certificate(&mut tx, &e.certificate).await?;
        audit(&mut tx, &e.event).await?;
        tx.commit().await?;
        Ok(EnrollOutcome::Enrolled)
    }

    async fn certificates_by_subject(&self, subject: &str) -> Result<Vec<CertificateRecord>> {
        let rows = sqlx::query("SELECT * FROM certificates WHERE subject = $1 ORDER BY issued_at")
            .bind(subject)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(rows::certificate).collect()
    }

    async fn node(&self, name: &str) -> Result<Option<NodeRecord>> {
        sqlx::query("SELECT * FROM nodes WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(rows::node)
            .transpose()
    }

    async fn put_node(&self, node: &NodeRecord, event: &AuditEvent) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO nodes (name, addresses, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET addresses = excluded.addresses, \
             updated_at = excluded.updated_at",
        )
        .bind(&node.name)
        .bind(node.addresses.join(","))
        .bind(node.updated_at)
        .execute(&mut *tx)
        .await?;
        audit(&mut tx, event).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn audit(&self, event: &AuditEvent) -> Result<()> {
        audit(&mut *self.pool.acquire().await?, event).await
    }

    async fn audit_log(&self, limit: u32) -> Result<Vec<AuditEvent>> {
        let rows = sqlx::query("SELECT * FROM audit ORDER BY id DESC LIMIT $1")
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(rows::audit).collect()
    }

    async fn named(&self) -> Result<Vec<NamedRecord>> {
        let rows = sqlx::query("SELECT * FROM named_certificates ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(rows::named).collect()
    }

    async fn named_by_name(&self, name: &str) -> Result<Option<NamedRecord>> {
        sqlx::query("SELECT * FROM named_certificates WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(rows::named)
            .transpose()
    }

    async fn save_named(&self, changes: &[NamedChange]) -> Result<i64> {
        let mut tx = self.pool.begin().await?;
        let revision = save_named_in(&mut tx, changes, &self.origin).await?;
        tx.commit().await?;
        Ok(revision)
    }

    async fn named_version(&self, name: &str, version: i64) -> Result<Option<NamedVersion>> {
        sqlx::query("SELECT * FROM named_versions WHERE name = $1 AND version = $2")
            .bind(name)
            .bind(version)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(rows::named_version)
            .transpose()
    }

    async fn acknowledge(&self, ack: &Acknowledgement) -> Result<()> {
        sqlx::query(
            "INSERT INTO acknowledgements (node, name, version, fingerprint, at, served) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (node, name) DO UPDATE SET version = excluded.version, \
             fingerprint = excluded.fingerprint, at = excluded.at, served = excluded.served",
        )
        .bind(&ack.node)
        .bind(&ack.name)
        .bind(ack.version)
        .bind(&ack.fingerprint)
        .bind(ack.at)
        .bind(ack.served)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn acknowledgements(&self) -> Result<Vec<Acknowledgement>> {
        let rows = sqlx::query("SELECT * FROM acknowledgements ORDER BY name, node")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(rows::acknowledgement).collect()
    }

    async fn revision(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT value FROM revision")
            .fetch_one(&self.pool)
            .await?)
    }

    async fn put_crls(&self, crls: &[(String, Vec<u8>)]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        put_crls_in(&mut tx, crls, &self.origin).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn crls(&self) -> Result<Vec<(String, Vec<u8>)>> {
        let rows = sqlx::query("SELECT name, der FROM crls ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("name")?, r.try_get("der")?)))
            .collect()
    }

    async fn lock(&self, job: Job) -> Result<JobLock> {
        let local = self.locks.wait(job).await;
        // Held until the transaction ends: when the guard drops, or the process dies.
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(job.advisory_key())
            .execute(&mut *tx)
            .await?;
        Ok(JobLock::new(local, Some(Box::new(tx))))
    }

    fn changes(&self) -> Option<broadcast::Receiver<Change>> {
        Some(self.changes.subscribe())
    }

    async fn close(&self) {
        self.listener.abort();
        self.pool.close().await;
    }
}
