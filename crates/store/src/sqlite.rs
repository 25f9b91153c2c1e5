//! The embedded datastore: one SQLite file in WAL mode, every commit flushed to disk
//! (`synchronous=FULL`), one writer connection and a few readers.
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite};
use tokio::sync::{mpsc, oneshot};

use crate::locks::LocalLocks;
use crate::rows;
use crate::{
    Acknowledgement, ActiveCount, AuditEvent, CaRecord, CertificateRecord, Change, EnrollOutcome,
    Enrollment, Initialization, InventoryQuery, Job, JobLock, NamedChange, NamedRecord,
    NamedVersion, NodeRecord, Result, RevokeOutcome, RevokedSerial, Rotation, Store, StoreError,
    TokenRecord, TokenUse, Transaction,
};

/// Schema versions, applied in order, each in its own transaction.
///
/// Not `sqlx::migrate!`: every datastore in use records its version in `schema_version`,
/// which sqlx's `_sqlx_migrations` would not read (it would run 0001 again on them), the
/// runner here is a few lines per backend, and the macro needs sqlx's `migrate` and
/// `macros` features, a proc-macro build of the drivers this crate keeps out.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/sqlite/0001_initial.sql")),
    (
        2,
        include_str!("../migrations/sqlite/0002_named_certificates.sql"),
    ),
    (3, include_str!("../migrations/sqlite/0003_crls.sql")),
    (
        4,
        include_str!("../migrations/sqlite/0004_bound_identity.sql"),
    ),
    (5, include_str!("../migrations/sqlite/0005_superseded.sql")),
    (6, include_str!("../migrations/sqlite/0006_served.sql")),
];

const INITIALIZED: &str = "initialized";
const REVISION: &str = "revision";

#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    /// Inventory rows and audit events go through the group-commit writer.
    commits: mpsc::Sender<Commit>,
    locks: LocalLocks,
}

/// One write waiting for the group commit.
#[derive(Debug)]
enum Write {
    Certificate(Box<CertificateRecord>),
    /// A certificate and its audit entry, both or neither.
    Issued(Box<CertificateRecord>, AuditEvent),
    Audit(AuditEvent),
    /// A node's report of what it installed (replaces its previous one for that name).
    Ack(Acknowledgement),
    /// Answered once every write queued before it is committed.
    Flush,
}

#[derive(Debug)]
struct Commit {
    write: Write,
    done: oneshot::Sender<Result<()>>,
}

/// The most writes committed in one transaction.
const MAX_GROUP: usize = 512;

/// Commits queued writes in groups: it takes every write waiting (up to [`MAX_GROUP`]),
/// applies each in its own savepoint so one failing row does not undo the others, and
/// commits them with one flush to disk. Under load many certificates share one fsync;
/// alone, a write waits for nothing.
async fn group_commit(writer: SqlitePool, mut queue: mpsc::Receiver<Commit>) {
    while let Some(first) = queue.recv().await {
        let mut writes = vec![first.write];
        let mut done = vec![first.done];
        while writes.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(next) => {
                    writes.push(next.write);
                    done.push(next.done);
                }
                Err(_) => break,
            }
        }
        match commit_group(&writer, writes).await {
            Ok(results) => {
                for (done, result) in done.into_iter().zip(results) {
                    let _ = done.send(result);
                }
            }
            Err(error) => {
                let message = error.to_string();
                for done in done {
                    let _ = done.send(Err(StoreError::Invalid(format!(
                        "group commit failed: {message}"
                    ))));
                }
            }
        }
    }
}

async fn commit_group(writer: &SqlitePool, writes: Vec<Write>) -> Result<Vec<Result<()>>> {
    let mut conn = writer.acquire().await?;
    if let [Write::Certificate(_) | Write::Audit(_) | Write::Ack(_) | Write::Flush] =
        writes.as_slice()
    {
        // Alone and one statement: its own transaction, nothing more.
        return Ok(vec![apply(&mut conn, &writes[0]).await]);
    }
    sqlx::query("BEGIN").execute(&mut *conn).await?;
    // Every row in one statement per table; if one row is refused (a serial taken), the
    // group is applied again row by row so only that write fails.
    let applied = match insert_all(&mut conn, &writes).await {
        Ok(()) => Ok(writes.iter().map(|_| Ok(())).collect()),
        Err(_) => {
            sqlx::query("ROLLBACK").execute(&mut *conn).await?;
            sqlx::query("BEGIN").execute(&mut *conn).await?;
            apply_group(&mut conn, writes).await
        }
    };
    let committed = match applied {
        Ok(results) => sqlx::query("COMMIT")
            .execute(&mut *conn)
            .await
            .map(|_| results)
            .map_err(StoreError::from),
        Err(error) => Err(error),
    };
    if committed.is_err() {
        // Never hand the connection back inside a transaction.
        let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
    }
    committed
}

/// Inserts every certificate and audit entry of `writes` with one statement per table.
async fn insert_all(conn: &mut SqliteConnection, writes: &[Write]) -> Result<()> {
    let mut certificates = Vec::with_capacity(writes.len());
    let mut events = Vec::with_capacity(writes.len());
    let mut acks = Vec::new();
    for write in writes {
        match write {
            Write::Ack(ack) => acks.push(ack),
            Write::Certificate(record) => certificates.push(&**record),
            Write::Issued(record, event) => {
                certificates.push(&**record);
                events.push(event);
            }
            Write::Audit(event) => events.push(event),
            Write::Flush => {}
        }
    }
    insert_certificates(conn, certificates).await?;
    insert_events(conn, events).await?;
    upsert_acks(conn, acks).await
}

/// One statement for all of `acks` (none: nothing); a later report for the same node and
/// name replaces an earlier one.
async fn upsert_acks(conn: &mut SqliteConnection, acks: Vec<&Acknowledgement>) -> Result<()> {
    if acks.is_empty() {
        return Ok(());
    }
    sqlx::QueryBuilder::<Sqlite>::new(
        "INSERT INTO acknowledgements (node, name, version, fingerprint, at, served) ",
    )
    .push_values(acks, |mut row, a| {
        row.push_bind(&a.node)
            .push_bind(&a.name)
            .push_bind(a.version)
            .push_bind(&a.fingerprint)
            .push_bind(a.at)
            .push_bind(a.served);
    })
    .push(
        " ON CONFLICT (node, name) DO UPDATE SET version = excluded.version, \
         fingerprint = excluded.fingerprint, at = excluded.at, served = excluded.served",
    )
    .build()
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn apply(conn: &mut SqliteConnection, write: &Write) -> Result<()> {
    match write {
        Write::Certificate(record) => insert_certificate(conn, record).await,
        Write::Issued(record, event) => {
            insert_certificate(conn, record).await?;
            audit(conn, event).await
        }
        Write::Audit(event) => audit(conn, event).await,
        Write::Ack(ack) => upsert_acks(conn, vec![ack]).await,
        Write::Flush => Ok(()),
    }
}

async fn apply_group(conn: &mut SqliteConnection, writes: Vec<Write>) -> Result<Vec<Result<()>>> {
    let mut results = Vec::with_capacity(writes.len());
    for write in &writes {
        sqlx::query("SAVEPOINT one").execute(&mut *conn).await?;
        let result = apply(conn, write).await;
        if result.is_err() {
            sqlx::query("ROLLBACK TO one").execute(&mut *conn).await?;
        }
        sqlx::query("RELEASE one").execute(&mut *conn).await?;
        results.push(result);
    }
    Ok(results)
}

impl SqliteStore {
    /// Opens (creating if missing) the datastore at `path` and brings its schema up to date.
    pub async fn open(path: &Path) -> Result<Self> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        let store = SqliteStore {
            reader: SqlitePoolOptions::new()
                .max_connections(4)
                .connect_with(options.read_only(true))
                .await?,
            commits: Self::start_group_commit(writer.clone()),
            writer,
            locks: LocalLocks::default(),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// An in-memory datastore (one shared connection), for tests of the trait.
    pub async fn in_memory() -> Result<Self> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")?;
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await?;
        let store = SqliteStore {
            writer: pool.clone(),
            commits: Self::start_group_commit(pool.clone()),
            reader: pool,
            locks: LocalLocks::default(),
        };
        store.migrate().await?;
        Ok(store)
    }

    fn start_group_commit(writer: SqlitePool) -> mpsc::Sender<Commit> {
        let (commits, queue) = mpsc::channel(4 * MAX_GROUP);
        tokio::spawn(group_commit(writer, queue));
        commits
    }

    async fn queue(&self, write: Write) -> Result<()> {
        let (done, answer) = oneshot::channel();
        self.commits
            .send(Commit { write, done })
            .await
            .map_err(|_| StoreError::Invalid("the datastore is closed".into()))?;
        answer.await.map_err(|_| {
            StoreError::Invalid("the datastore closed before the write was committed".into())
        })?
    }

    async fn migrate(&self) -> Result<()> {
        sqlx::raw_sql("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            .execute(&self.writer)
            .await?;
        let current: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM schema_version")
            .fetch_one(&self.writer)
            .await?;
        let current = current.unwrap_or(0);
        let newest = MIGRATIONS.last().map_or(0, |m| m.0);
        if current > newest {
            return Err(StoreError::Invalid(format!(
                "the datastore has schema version {current}, newer than this evergreen knows ({newest}); run a newer evergreen"
            )));
        }
        for (version, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
            let mut tx = self.writer.begin().await?;
            sqlx::raw_sql(sql).execute(&mut *tx).await?;
            sqlx::query("INSERT INTO schema_version (version) VALUES (?)")
                .bind(version)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        }
        Ok(())
    }
}

async fn insert_certificate(conn: &mut SqliteConnection, c: &CertificateRecord) -> Result<()> {
    insert_certificates(conn, vec![c]).await
}

/// One INSERT for all of `certificates` (none: nothing).
async fn insert_certificates(
    conn: &mut SqliteConnection,
    certificates: Vec<&CertificateRecord>,
) -> Result<()> {
    if certificates.is_empty() {
        return Ok(());
    }
    sqlx::QueryBuilder::<Sqlite>::new(
        "INSERT INTO certificates (serial, sha256, subject, sans, profile, role, issuer, owner, \
         not_before, not_after, issued_at, renewed_from, revoked_at, revocation_reason, der) ",
    )
    .push_values(certificates.iter(), |mut row, c| {
        row.push_bind(&c.serial)
            .push_bind(&c.sha256)
            .push_bind(&c.subject)
            .push_bind(c.sans.join(","))
            .push_bind(&c.profile)
            .push_bind(&c.role)
            .push_bind(&c.issuer)
            .push_bind(&c.owner)
            .push_bind(c.not_before)
            .push_bind(c.not_after)
            .push_bind(c.issued_at)
            .push_bind(&c.renewed_from)
            .push_bind(c.revoked_at)
            .push_bind(&c.revocation_reason)
            .push_bind(&c.der);
    })
    .build()
    .execute(&mut *conn)
    .await?;
    for c in certificates.iter().filter(|c| c.renewed_from.is_some()) {
        sqlx::query(SUPERSEDE)
            .bind(&c.serial)
            .bind(&c.renewed_from)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Marks the certificate a new one renews (`?2`) as replaced by it (`?1`).
const SUPERSEDE: &str =
    "UPDATE certificates SET superseded_by = ?1 WHERE serial = ?2 AND superseded_by IS NULL";

async fn put_ca(conn: &mut SqliteConnection, ca: &CaRecord) -> Result<()> {
    sqlx::query(
        "INSERT INTO cas (name, bundle_pem, sealed_key, updated_at) VALUES (?, ?, ?, ?) \
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

async fn put_meta(conn: &mut SqliteConnection, key: &str, value: &[u8]) -> Result<()> {
    sqlx::query(
        "INSERT INTO meta (key, value) VALUES (?, ?) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )
    .bind(key)
    .bind(value)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Advances the cluster revision agents watch.
async fn next_revision(conn: &mut SqliteConnection) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "INSERT INTO meta (key, value) VALUES (?, CAST(1 AS TEXT)) \
         ON CONFLICT (key) DO UPDATE SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) \
         RETURNING CAST(value AS INTEGER)",
    )
    .bind(REVISION)
    .fetch_one(&mut *conn)
    .await?)
}

async fn insert_token(conn: &mut SqliteConnection, t: &TokenRecord) -> Result<()> {
    sqlx::query(
        "INSERT INTO tokens (id, secret_sha256, role, created_at, expires_at, uses, max_uses, \
         node, node_pattern, subject, description) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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

async fn audit(conn: &mut SqliteConnection, e: &AuditEvent) -> Result<()> {
    insert_events(conn, vec![e]).await
}

/// One INSERT for all of `events` (none: nothing).
async fn insert_events(conn: &mut SqliteConnection, events: Vec<&AuditEvent>) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    sqlx::QueryBuilder::<Sqlite>::new(
        "INSERT INTO audit (at, actor, action, target, outcome, detail) ",
    )
    .push_values(events, |mut row, e| {
        row.push_bind(e.at)
            .push_bind(&e.actor)
            .push_bind(&e.action)
            .push_bind(&e.target)
            .push_bind(&e.outcome)
            .push_bind(&e.detail);
    })
    .build()
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn rotate_in(conn: &mut SqliteConnection, rotation: &Rotation) -> Result<i64> {
    for (ca, retired_as) in &rotation.cas {
        let kept = sqlx::query(
            "INSERT INTO cas (name, bundle_pem, sealed_key, crl_number, updated_at) \
                 SELECT ?, bundle_pem, sealed_key, crl_number, ? FROM cas WHERE name = ?",
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
    let revision = next_revision(conn).await?;
    Ok(revision)
}

async fn next_crl_number_in(conn: &mut SqliteConnection, ca: &str) -> Result<u64> {
    let n: Option<i64> = sqlx::query_scalar(
        "UPDATE cas SET crl_number = crl_number + 1 WHERE name = ? RETURNING crl_number",
    )
    .bind(ca)
    .fetch_optional(&mut *conn)
    .await?;
    let n = n.ok_or_else(|| StoreError::Invalid(format!("no CA named {ca}")))?;
    u64::try_from(n).map_err(|_| StoreError::Invalid(format!("CRL number {n} of {ca}")))
}

async fn save_named_in(conn: &mut SqliteConnection, changes: &[NamedChange]) -> Result<i64> {
    for change in changes {
        let r = &change.record;
        sqlx::query(
                "INSERT INTO named_certificates (name, scope, kind, label, internal, usage, sans, nodes, \
                 secret_path, secret_keys, version, created_at, updated_at, allowed_dns, allowed_cidrs) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
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
                    "INSERT INTO named_versions (name, version, chain_pem, sealed_key, ca_pem, fingerprint, \
                     not_after, reason, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
    let revision = next_revision(conn).await?;
    Ok(revision)
}

async fn put_crls_in(conn: &mut SqliteConnection, crls: &[(String, Vec<u8>)]) -> Result<()> {
    sqlx::query("DELETE FROM crls").execute(&mut *conn).await?;
    for (name, der) in crls {
        sqlx::query("INSERT INTO crls (name, der) VALUES (?, ?)")
            .bind(name)
            .bind(der)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

async fn initialize_in(conn: &mut SqliteConnection, init: &Initialization) -> Result<()> {
    let done: Option<Vec<u8>> = sqlx::query_scalar("SELECT value FROM meta WHERE key = ?")
        .bind(INITIALIZED)
        .fetch_optional(&mut *conn)
        .await?;
    if done.is_some() {
        return Err(StoreError::AlreadyInitialized);
    }
    for (key, value) in &init.meta {
        sqlx::query("INSERT INTO meta (key, value) VALUES (?, ?)")
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
    sqlx::query("INSERT INTO meta (key, value) VALUES (?, ?)")
        .bind(INITIALIZED)
        .bind(b"1".as_slice())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// A change's writes on the one writer connection (see [`Transaction`]): group commits and
/// other writes wait until it commits or is dropped.
async fn revoke_in(
    conn: &mut SqliteConnection,
    serial: &str,
    at: i64,
    reason: &str,
) -> Result<RevokeOutcome> {
    let Some(row) = sqlx::query("SELECT * FROM certificates WHERE serial = ?")
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
    sqlx::query("UPDATE certificates SET revoked_at = ?, revocation_reason = ? WHERE serial = ?")
        .bind(at)
        .bind(reason)
        .bind(serial)
        .execute(&mut *conn)
        .await?;
    record.revoked_at = Some(at);
    record.revocation_reason = Some(reason.to_owned());
    Ok(RevokeOutcome::Revoked(record))
}

async fn revoked_in(conn: &mut SqliteConnection, issuer: &str) -> Result<Vec<RevokedSerial>> {
    let rows = sqlx::query(
        "SELECT serial, revoked_at, revocation_reason FROM certificates \
         WHERE issuer = ? AND revoked_at IS NOT NULL ORDER BY revoked_at, serial",
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

async fn delete_named_in(conn: &mut SqliteConnection, name: &str) -> Result<i64> {
    for table in ["acknowledgements", "named_versions", "named_certificates"] {
        sqlx::query(&format!("DELETE FROM {table} WHERE name = ?"))
            .bind(name)
            .execute(&mut *conn)
            .await?;
    }
    next_revision(conn).await
}

struct SqliteTransaction(sqlx::Transaction<'static, Sqlite>);

#[async_trait]
impl Transaction for SqliteTransaction {
    async fn rotate(&mut self, rotation: &Rotation) -> Result<i64> {
        rotate_in(&mut self.0, rotation).await
    }

    async fn put_meta(&mut self, key: &str, value: &[u8]) -> Result<()> {
        put_meta(&mut self.0, key, value).await
    }

    async fn next_crl_number(&mut self, ca: &str) -> Result<u64> {
        next_crl_number_in(&mut self.0, ca).await
    }

    async fn put_crls(&mut self, crls: &[(String, Vec<u8>)]) -> Result<()> {
        put_crls_in(&mut self.0, crls).await
    }

    async fn insert_certificate(&mut self, cert: &CertificateRecord) -> Result<()> {
        insert_certificate(&mut self.0, cert).await
    }

    async fn audit(&mut self, event: &AuditEvent) -> Result<()> {
        audit(&mut self.0, event).await
    }

    async fn save_named(&mut self, changes: &[NamedChange]) -> Result<i64> {
        save_named_in(&mut self.0, changes).await
    }

    async fn delete_named(&mut self, name: &str) -> Result<i64> {
        delete_named_in(&mut self.0, name).await
    }

    async fn revoke(&mut self, serial: &str, at: i64, reason: &str) -> Result<RevokeOutcome> {
        revoke_in(&mut self.0, serial, at, reason).await
    }

    async fn revoked(&mut self, issuer: &str) -> Result<Vec<RevokedSerial>> {
        revoked_in(&mut self.0, issuer).await
    }

    async fn initialize(&mut self, init: &Initialization) -> Result<()> {
        initialize_in(&mut self.0, init).await
    }

    async fn commit(self: Box<Self>) -> Result<()> {
        Ok(self.0.commit().await?)
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn is_initialized(&self) -> Result<bool> {
        Ok(self.get_meta(INITIALIZED).await?.is_some())
    }

    async fn initialize(&self, init: Initialization) -> Result<()> {
        let mut tx = self.writer.begin().await?;
        initialize_in(&mut tx, &init).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(sqlx::query_scalar("SELECT value FROM meta WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.reader)
            .await?)
    }

    async fn cas(&self) -> Result<Vec<CaRecord>> {
        let rows =
            sqlx::query("SELECT name, bundle_pem, sealed_key, updated_at FROM cas ORDER BY name")
                .fetch_all(&self.reader)
                .await?;
        rows.iter().map(rows::ca).collect()
    }

    async fn put_ca(&self, ca: &CaRecord) -> Result<()> {
        put_ca(&mut *self.writer.acquire().await?, ca).await
    }

    async fn begin(&self) -> Result<Box<dyn Transaction>> {
        Ok(Box::new(SqliteTransaction(self.writer.begin().await?)))
    }

    async fn put_meta(&self, key: &str, value: &[u8], event: &AuditEvent) -> Result<()> {
        let mut tx = self.writer.begin().await?;
        put_meta(&mut tx, key, value).await?;
        audit(&mut tx, event).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn rotate(&self, rotation: &Rotation) -> Result<i64> {
        let mut tx = self.writer.begin().await?;
        let revision = rotate_in(&mut tx, rotation).await?;
        tx.commit().await?;
        Ok(revision)
    }

    async fn next_crl_number(&self, ca: &str) -> Result<u64> {
        next_crl_number_in(&mut *self.writer.acquire().await?, ca).await
    }

    async fn insert_certificate(&self, cert: &CertificateRecord) -> Result<()> {
        self.queue(Write::Certificate(Box::new(cert.clone()))).await
    }

    async fn record_issuance(&self, cert: &CertificateRecord, event: &AuditEvent) -> Result<()> {
        self.queue(Write::Issued(Box::new(cert.clone()), event.clone()))
            .await
    }

    async fn certificate_by_serial(&self, serial: &str) -> Result<Option<CertificateRecord>> {
        sqlx::query("SELECT * FROM certificates WHERE serial = ?")
            .bind(serial)
            .fetch_optional(&self.reader)
            .await?
            .as_ref()
            .map(rows::certificate)
            .transpose()
    }

    async fn certificate_by_sha256(&self, sha256: &str) -> Result<Option<CertificateRecord>> {
        sqlx::query("SELECT * FROM certificates WHERE sha256 = ?")
            .bind(sha256)
            .fetch_optional(&self.reader)
            .await?
            .as_ref()
            .map(rows::certificate)
            .transpose()
    }

    async fn list_certificates(&self, q: &InventoryQuery) -> Result<Vec<CertificateRecord>> {
        let rows = rows::inventory_query::<Sqlite>(q)?
            .build()
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(rows::certificate).collect()
    }

    async fn active_counts(&self, now: i64) -> Result<Vec<ActiveCount>> {
        let rows = rows::active_counts_query::<Sqlite>(now)
            .build()
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(rows::active_count).collect()
    }

    async fn revoke(&self, serial: &str, at: i64, reason: &str) -> Result<RevokeOutcome> {
        let mut tx = self.writer.begin().await?;
        let outcome = revoke_in(&mut tx, serial, at, reason).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    async fn revoked(&self, issuer: &str) -> Result<Vec<RevokedSerial>> {
        revoked_in(&mut *self.reader.acquire().await?, issuer).await
    }

    async fn insert_token(&self, token: &TokenRecord) -> Result<()> {
        insert_token(&mut *self.writer.acquire().await?, token).await
    }

    async fn token(&self, id: &str) -> Result<Option<TokenRecord>> {
        sqlx::query("SELECT * FROM tokens WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.reader)
            .await?
            .as_ref()
            .map(rows::token)
            .transpose()
    }

    async fn live_tokens(&self, now: i64) -> Result<Vec<TokenRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM tokens WHERE (expires_at IS NULL OR expires_at > ?) \
             AND (max_uses IS NULL OR uses < max_uses) ORDER BY created_at, id",
        )
        .bind(now)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(rows::token).collect()
    }

    async fn enroll(&self, e: &Enrollment) -> Result<EnrollOutcome> {
        // The one writer connection serialises enrollments: what is checked here is still
        // true when the transaction commits.
        let mut tx = self.writer.begin().await?;
        let Some(row) = sqlx::query("SELECT * FROM tokens WHERE id = ?")
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
        let holders = sqlx::query("SELECT * FROM certificates WHERE subject = ?")
            .bind(&e.certificate.subject)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(rows::certificate)
            .collect::<Result<Vec<_>>>()?;
        if let Some(holder) = rows::conflicting_holder(holders, &e.exclusive_of, e.now) {
            return Ok(EnrollOutcome::SubjectTaken(Box::new(holder)));
        }
        sqlx::query("UPDATE tokens SET uses = uses + 1 WHERE id = ?")
            .bind(&e.token_id)
            .execute(&mut *tx)
            .await?;
        insert_certificate(&mut tx, &e.certificate).await?;
        audit(&mut tx, &e.event).await?;
        tx.commit().await?;
        Ok(EnrollOutcome::Enrolled)
    }

    async fn certificates_by_subject(&self, subject: &str) -> Result<Vec<CertificateRecord>> {
        let rows = sqlx::query("SELECT * FROM certificates WHERE subject = ? ORDER BY issued_at")
            .bind(subject)
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(rows::certificate).collect()
    }

    async fn node(&self, name: &str) -> Result<Option<NodeRecord>> {
        sqlx::query("SELECT * FROM nodes WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.reader)
            .await?
            .as_ref()
            .map(rows::node)
            .transpose()
    }

    async fn put_node(&self, node: &NodeRecord, event: &AuditEvent) -> Result<()> {
        let mut tx = self.writer.begin().await?;
        sqlx::query(
            "INSERT INTO nodes (name, addresses, updated_at) VALUES (?, ?, ?) \
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
        self.queue(Write::Audit(event.clone())).await
    }

    async fn audit_log(&self, limit: u32) -> Result<Vec<AuditEvent>> {
        let rows = sqlx::query("SELECT * FROM audit ORDER BY id DESC LIMIT ?")
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(rows::audit).collect()
    }

    async fn named(&self) -> Result<Vec<NamedRecord>> {
        let rows = sqlx::query("SELECT * FROM named_certificates ORDER BY name")
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(rows::named).collect()
    }

    async fn named_by_name(&self, name: &str) -> Result<Option<NamedRecord>> {
        sqlx::query("SELECT * FROM named_certificates WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.reader)
            .await?
            .as_ref()
            .map(rows::named)
            .transpose()
    }

    async fn save_named(&self, changes: &[NamedChange]) -> Result<i64> {
        let mut tx = self.writer.begin().await?;
        let revision = save_named_in(&mut tx, changes).await?;
        tx.commit().await?;
        Ok(revision)
    }

    async fn named_version(&self, name: &str, version: i64) -> Result<Option<NamedVersion>> {
        sqlx::query("SELECT * FROM named_versions WHERE name = ? AND version = ?")
            .bind(name)
            .bind(version)
            .fetch_optional(&self.reader)
            .await?
            .as_ref()
            .map(rows::named_version)
            .transpose()
    }

    async fn acknowledge(&self, ack: &Acknowledgement) -> Result<()> {
        self.queue(Write::Ack(ack.clone())).await
    }

    async fn acknowledgements(&self) -> Result<Vec<Acknowledgement>> {
        let rows = sqlx::query("SELECT * FROM acknowledgements ORDER BY name, node")
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(rows::acknowledgement).collect()
    }

    async fn revision(&self) -> Result<i64> {
        let value: Option<String> =
            sqlx::query_scalar("SELECT CAST(value AS TEXT) FROM meta WHERE key = ?")
                .bind(REVISION)
                .fetch_optional(&self.reader)
                .await?;
        Ok(value.and_then(|v| v.parse().ok()).unwrap_or(0))
    }

    async fn put_crls(&self, crls: &[(String, Vec<u8>)]) -> Result<()> {
        let mut tx = self.writer.begin().await?;
        put_crls_in(&mut tx, crls).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn crls(&self) -> Result<Vec<(String, Vec<u8>)>> {
        let rows = sqlx::query("SELECT name, der FROM crls ORDER BY name")
            .fetch_all(&self.reader)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("name")?, r.try_get("der")?)))
            .collect()
    }

    async fn lock(&self, job: Job) -> Result<JobLock> {
        // This process is the datastore's only writer.
        Ok(JobLock::new(self.locks.wait(job).await, None))
    }

    fn changes(&self) -> Option<tokio::sync::broadcast::Receiver<Change>> {
        None
    }

    async fn close(&self) {
        // Everything queued is committed before the connections close, and the
        // write-ahead log is folded into the database file and truncated, so a stopped
        // server leaves one self-contained file whatever order connections finish closing.
        let _ = self.queue(Write::Flush).await;
        self.reader.close().await;
        if let Ok(mut conn) = self.writer.acquire().await {
            let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&mut *conn)
                .await;
        }
        self.writer.close().await;
    }
}
