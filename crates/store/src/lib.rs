//! Evergreen's datastore.
//!
//! The [`Store`] trait is everything the control plane keeps: the CAs (keys sealed with
//! [`envelope`]), the inventory of every issued certificate, revocations, join tokens and
//! the audit log. [`sqlite::SqliteStore`] is the embedded default;
//! [`postgres::PostgresStore`] lets several server replicas share one database.
//!
//! Times are seconds since 1970 (UTC); serials and hashes are lowercase hex.
#![forbid(unsafe_code)]

pub mod envelope;
mod locks;
pub mod postgres;
mod rows;
pub mod sqlite;

use async_trait::async_trait;

pub use locks::{Job, JobLock};
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// Opens the datastore a server is pointed at: `postgres://…` (or `postgresql://…`) is a
/// shared PostgreSQL database, `sqlite://PATH` an SQLite file.
pub async fn open(datastore: &str) -> Result<std::sync::Arc<dyn Store>> {
    if datastore.starts_with("postgres://") || datastore.starts_with("postgresql://") {
        Ok(std::sync::Arc::new(
            PostgresStore::connect(datastore).await?,
        ))
    } else if let Some(path) = datastore.strip_prefix("sqlite://") {
        Ok(std::sync::Arc::new(
            SqliteStore::open(std::path::Path::new(path)).await?,
        ))
    } else {
        Err(StoreError::Invalid(
            "a datastore is postgres://user:password@host:port/database or sqlite://PATH".into(),
        ))
    }
}

/// A change written by another process sharing the datastore, which a server must pick
/// up: PostgreSQL delivers them with LISTEN/NOTIFY.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The cluster revision advanced: named certificates or CAs changed.
    Revision,
    /// A cluster fact changed (the service-account key set).
    Meta,
    /// New CRLs were published.
    Crls,
    /// The notification connection was lost and re-established: changes may have been
    /// missed, so reload everything.
    Resync,
}

impl Change {
    fn as_str(self) -> &'static str {
        match self {
            Change::Revision => "revision",
            Change::Meta => "meta",
            Change::Crls => "crls",
            Change::Resync => "resync",
        }
    }

    fn parse(payload: &str) -> Change {
        match payload {
            "revision" => Change::Revision,
            "meta" => Change::Meta,
            "crls" => Change::Crls,
            _ => Change::Resync,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("datastore error: {0}")]
    Database(sqlx::Error),
    #[error("the datastore is already initialised")]
    AlreadyInitialized,
    /// A write lost a race with another writer (a unique constraint held); retrying
    /// reads the winner's state.
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict(format!("already recorded: {}", db.message()))
            }
            _ => StoreError::Database(e),
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A cluster CA as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct CaRecord {
    /// `root-ca`, `server-ca`, `client-ca` or `peer-ca`.
    pub name: String,
    /// The CA certificate first, then the certificates above it.
    pub bundle_pem: String,
    /// The key in its envelope; `None` when kept offline.
    pub sealed_key: Option<Vec<u8>>,
    pub updated_at: i64,
}

impl std::fmt::Debug for CaRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaRecord")
            .field("name", &self.name)
            .field("sealed_key", &self.sealed_key.as_ref().map(|_| "[elided]"))
            .finish_non_exhaustive()
    }
}

/// One issued certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateRecord {
    pub serial: String,
    pub sha256: String,
    pub subject: String,
    pub sans: Vec<String>,
    pub profile: String,
    pub role: String,
    pub issuer: String,
    pub owner: String,
    pub not_before: i64,
    pub not_after: i64,
    pub issued_at: i64,
    pub renewed_from: Option<String>,
    pub revoked_at: Option<i64>,
    pub revocation_reason: Option<String>,
    /// The certificate that replaced this one (a renewal, a new version): recorded when
    /// the replacement is, from its `renewed_from`.
    pub superseded_by: Option<String>,
    pub der: Vec<u8>,
}

impl CertificateRecord {
    /// Whether it still authenticates at `now`: not revoked and not expired, replaced or
    /// not.
    pub fn is_live(&self, now: i64) -> bool {
        self.revoked_at.is_none() && self.not_after >= now
    }

    /// `revoked`, `superseded`, `expired` or `active` at `now`. A certificate that was
    /// replaced is `superseded` whether or not it has expired since: only certificates in
    /// use are `active` or `expired`, so expiry alerts concern those alone.
    pub fn status(&self, now: i64) -> &'static str {
        if self.revoked_at.is_some() {
            "revoked"
        } else if self.superseded_by.is_some() {
            "superseded"
        } else if self.not_after < now {
            "expired"
        } else {
            "active"
        }
    }
}

/// Which certificates an inventory listing wants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InventoryQuery {
    /// Only certificates whose not-after is at or before this time.
    pub not_after_before: Option<i64>,
    /// `active`, `expired`, `superseded` or `revoked`, judged at `now`.
    pub status: Option<String>,
    pub now: i64,
    /// Continue after this (not_after, serial) position.
    pub after: Option<(i64, String)>,
    pub limit: u32,
}

/// Live certificates of one role and issuer: how many, and the soonest expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveCount {
    pub role: String,
    pub issuer: String,
    pub count: i64,
    pub soonest_not_after: i64,
}

/// The result of a revocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevokeOutcome {
    Revoked(CertificateRecord),
    AlreadyRevoked(CertificateRecord),
    NotFound,
}

/// A revoked serial, for a CRL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedSerial {
    pub serial: String,
    pub revoked_at: i64,
    pub reason: String,
}

/// A join token as stored: the secret only as a hash, and what it may enroll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: String,
    pub secret_sha256: String,
    pub role: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub uses: i64,
    /// How many enrollments it allows; `None`: any number (tokens made before tokens
    /// were bound).
    pub max_uses: Option<i64>,
    /// A node token for exactly this node name.
    pub node: Option<String>,
    /// A node token for names matching this pattern (`worker-*`).
    pub node_pattern: Option<String>,
    /// An app token for this subject; its CN may hold `*` (`CN=billing-*, O=team`).
    pub subject: Option<String>,
    pub description: String,
}

impl TokenRecord {
    /// Whether the token may enroll once more at `now` with this secret hash.
    pub fn check(self, secret_sha256: &str, now: i64) -> TokenUse {
        if !rows::constant_time_eq(self.secret_sha256.as_bytes(), secret_sha256.as_bytes()) {
            return TokenUse::WrongSecret;
        }
        if let Some(expires_at) = self.expires_at.filter(|e| *e <= now) {
            return TokenUse::Expired { expires_at };
        }
        if let Some(max_uses) = self.max_uses.filter(|max| self.uses >= *max) {
            return TokenUse::UsedUp { max_uses };
        }
        TokenUse::Accepted(Box::new(self))
    }
}

/// What presenting a token's id and secret hash came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenUse {
    /// The token may be used (by [`Store::enroll`], the use is then counted).
    Accepted(Box<TokenRecord>),
    Unknown,
    WrongSecret,
    Expired {
        expires_at: i64,
    },
    /// Every use it allows has been made.
    UsedUp {
        max_uses: i64,
    },
}

/// One enrollment, written in one transaction: the token is checked again and its use
/// counted, the subject checked against live certificates, the certificate and its audit
/// entry recorded. A refusal writes nothing, not even the use.
#[derive(Debug, Clone)]
pub struct Enrollment {
    pub token_id: String,
    pub secret_sha256: String,
    pub now: i64,
    pub certificate: CertificateRecord,
    pub event: AuditEvent,
    /// Roles whose live (unexpired, unrevoked) certificates may not share the new
    /// certificate's subject: an enrolled node's name is its own.
    pub exclusive_of: Vec<String>,
}

/// What an enrollment came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnrollOutcome {
    Enrolled,
    /// The token cannot be used (nothing was written).
    Refused(TokenUse),
    /// A live certificate of a conflicting role holds the subject (nothing was written).
    SubjectTaken(Box<CertificateRecord>),
}

/// What the server knows of a node beyond its certificates: the addresses an admin
/// allowed in its certificates (`evergreen node allow`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeRecord {
    pub name: String,
    pub addresses: Vec<String>,
    pub updated_at: i64,
}

/// One audit log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    pub at: i64,
    /// Who: `admin CN=…`, `token:abc123`, `CN=app (serial …)`, `anonymous`, `server`.
    pub actor: String,
    /// What: `enroll`, `renew`, `revoke`, `token.create`, `init`, …
    pub action: String,
    pub target: String,
    /// `ok` or `refused`.
    pub outcome: String,
    pub detail: String,
}

/// A named certificate's definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedRecord {
    pub name: String,
    /// `cluster` or `node`.
    pub scope: String,
    /// `selfsigned`, `provided` or `secret`.
    pub kind: String,
    pub label: String,
    pub internal: bool,
    /// `server`, `client` or `peer`.
    pub usage: String,
    pub sans: Vec<String>,
    /// Node names; empty means every node.
    pub nodes: Vec<String>,
    pub secret_path: Option<String>,
    /// File names in the secret directory: certificate, key, CA.
    pub secret_keys: [String; 3],
    /// DNS suffixes every DNS name of this certificate must end with; empty: any.
    pub allowed_dns: Vec<String>,
    /// IP ranges every IP address of this certificate must lie in; empty: any.
    pub allowed_cidrs: Vec<String>,
    /// The current version; 0 before the first.
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One version of a named certificate.
#[derive(Clone, PartialEq, Eq)]
pub struct NamedVersion {
    pub name: String,
    pub version: i64,
    /// Cluster scope: the chain (leaf first) and its sealed key; node scope: `None`.
    pub chain_pem: Option<String>,
    pub sealed_key: Option<Vec<u8>>,
    pub ca_pem: Option<String>,
    pub fingerprint: Option<String>,
    pub not_after: Option<i64>,
    /// Why this version exists: `created`, `set`, `label`, `rotate`, `secret changed`.
    pub reason: String,
    pub created_at: i64,
}

impl std::fmt::Debug for NamedVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NamedVersion")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("fingerprint", &self.fingerprint)
            .field("sealed_key", &self.sealed_key.as_ref().map(|_| "[elided]"))
            .finish_non_exhaustive()
    }
}

/// A change to one named certificate: its definition, and a new version if any.
#[derive(Debug, Clone)]
pub struct NamedChange {
    pub record: NamedRecord,
    pub new_version: Option<NamedVersion>,
}

/// What a node reported it installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acknowledgement {
    pub node: String,
    pub name: String,
    pub version: i64,
    pub fingerprint: String,
    pub at: i64,
    /// Whether the node saw its service serve this certificate (`None`: it does not check).
    pub served: Option<bool>,
}

/// A CA rotation, written in one transaction with its audit entry, advancing the cluster
/// revision so watching agents fetch the new trust bundle.
#[derive(Debug, Clone)]
pub struct Rotation {
    /// Each new CA, and the name its predecessor is kept under (with its key and CRL
    /// number, so leaves it issued stay verifiable and revocable until they expire).
    pub cas: Vec<(CaRecord, String)>,
    /// Cluster facts replaced with the CAs (the service-account key set).
    pub meta: Vec<(String, Vec<u8>)>,
    pub event: AuditEvent,
}

/// Everything first start writes, written in one transaction: a crash during
/// initialisation leaves nothing half-made.
#[derive(Debug, Clone, Default)]
pub struct Initialization {
    pub meta: Vec<(String, Vec<u8>)>,
    pub cas: Vec<CaRecord>,
    pub tokens: Vec<TokenRecord>,
    pub certificates: Vec<CertificateRecord>,
    pub audit: Vec<AuditEvent>,
}

/// The writes of one change to the cluster in one database transaction: nothing is
/// visible to anyone, another replica included, until [`Transaction::commit`], and a
/// transaction dropped without it changes nothing.
///
/// A change prepares everything it can before it begins one, then writes, makes itself
/// live in the process, and commits last; if the commit fails, it undoes going live. So a
/// failure at any step leaves the datastore, the files and what is served as they were.
#[async_trait]
pub trait Transaction: Send {
    /// As [`Store::initialize`].
    async fn initialize(&mut self, init: &Initialization) -> Result<()>;
    /// As [`Store::rotate`].
    async fn rotate(&mut self, rotation: &Rotation) -> Result<i64>;
    /// Sets a cluster fact (announced to other replicas on commit).
    async fn put_meta(&mut self, key: &str, value: &[u8]) -> Result<()>;
    /// As [`Store::next_crl_number`].
    async fn next_crl_number(&mut self, ca: &str) -> Result<u64>;
    /// As [`Store::put_crls`].
    async fn put_crls(&mut self, crls: &[(String, Vec<u8>)]) -> Result<()>;
    async fn insert_certificate(&mut self, cert: &CertificateRecord) -> Result<()>;
    async fn audit(&mut self, event: &AuditEvent) -> Result<()>;
    /// As [`Store::save_named`].
    async fn save_named(&mut self, changes: &[NamedChange]) -> Result<i64>;
    /// Removes a named certificate, its versions and the nodes' acknowledgements of it,
    /// advancing the cluster revision (which it returns). Its certificates stay in the
    /// inventory.
    async fn delete_named(&mut self, name: &str) -> Result<i64>;
    /// As [`Store::revoke`], in this transaction.
    async fn revoke(&mut self, serial: &str, at: i64, reason: &str) -> Result<RevokeOutcome>;
    /// As [`Store::revoked`], seeing this transaction's own revocations.
    async fn revoked(&mut self, issuer: &str) -> Result<Vec<RevokedSerial>>;
    async fn commit(self: Box<Self>) -> Result<()>;
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Begins the transaction of one change (see [`Transaction`]).
    async fn begin(&self) -> Result<Box<dyn Transaction>>;
    /// Whether first start has completed.
    async fn is_initialized(&self) -> Result<bool>;
    /// Writes all of `init` atomically; fails if already initialised.
    async fn initialize(&self, init: Initialization) -> Result<()>;
    async fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>>;
    /// Sets a cluster fact and writes its audit entry, both or neither.
    async fn put_meta(&self, key: &str, value: &[u8], event: &AuditEvent) -> Result<()>;

    async fn cas(&self) -> Result<Vec<CaRecord>>;
    async fn put_ca(&self, ca: &CaRecord) -> Result<()>;
    /// Replaces CAs, keeping each predecessor under its retired name; returns the new
    /// cluster revision. A retired name already in use fails the whole rotation.
    async fn rotate(&self, rotation: &Rotation) -> Result<i64>;
    /// Increments and returns the CA's CRL number.
    async fn next_crl_number(&self, ca: &str) -> Result<u64>;

    async fn insert_certificate(&self, cert: &CertificateRecord) -> Result<()>;
    /// Records an issued certificate and its audit entry together: both or neither.
    async fn record_issuance(&self, cert: &CertificateRecord, event: &AuditEvent) -> Result<()>;
    async fn certificate_by_serial(&self, serial: &str) -> Result<Option<CertificateRecord>>;
    async fn certificate_by_sha256(&self, sha256: &str) -> Result<Option<CertificateRecord>>;
    /// Ordered by (not_after, serial).
    async fn list_certificates(&self, query: &InventoryQuery) -> Result<Vec<CertificateRecord>>;
    /// Counts of live (unexpired, unrevoked) certificates at `now`, by role and issuer.
    async fn active_counts(&self, now: i64) -> Result<Vec<ActiveCount>>;
    async fn revoke(&self, serial: &str, at: i64, reason: &str) -> Result<RevokeOutcome>;
    async fn revoked(&self, issuer: &str) -> Result<Vec<RevokedSerial>>;

    async fn insert_token(&self, token: &TokenRecord) -> Result<()>;
    /// The token with this id: read only, no use is counted.
    async fn token(&self, id: &str) -> Result<Option<TokenRecord>>;
    /// Tokens that can still be used at `now` (unexpired, uses left), oldest first.
    async fn live_tokens(&self, now: i64) -> Result<Vec<TokenRecord>>;
    /// Enrolls, all or nothing (see [`Enrollment`]).
    async fn enroll(&self, enrollment: &Enrollment) -> Result<EnrollOutcome>;
    /// Every certificate issued for exactly this subject.
    async fn certificates_by_subject(&self, subject: &str) -> Result<Vec<CertificateRecord>>;

    async fn node(&self, name: &str) -> Result<Option<NodeRecord>>;
    /// Sets what the server knows of a node and writes the audit entry, both or neither.
    async fn put_node(&self, node: &NodeRecord, event: &AuditEvent) -> Result<()>;

    async fn audit(&self, event: &AuditEvent) -> Result<()>;
    /// The newest `limit` entries, newest first.
    async fn audit_log(&self, limit: u32) -> Result<Vec<AuditEvent>>;

    async fn named(&self) -> Result<Vec<NamedRecord>>;
    async fn named_by_name(&self, name: &str) -> Result<Option<NamedRecord>>;
    /// Writes every change in one transaction and advances the cluster revision; returns
    /// the new revision.
    async fn save_named(&self, changes: &[NamedChange]) -> Result<i64>;
    async fn named_version(&self, name: &str, version: i64) -> Result<Option<NamedVersion>>;
    async fn acknowledge(&self, ack: &Acknowledgement) -> Result<()>;
    async fn acknowledgements(&self) -> Result<Vec<Acknowledgement>>;
    /// The cluster revision: advances with every change agents watch for.
    async fn revision(&self) -> Result<i64>;

    /// Replaces the published CRLs, `(CA name, DER)`, all at once.
    async fn put_crls(&self, crls: &[(String, Vec<u8>)]) -> Result<()>;
    /// The published CRLs, by CA name.
    async fn crls(&self) -> Result<Vec<(String, Vec<u8>)>>;

    /// Waits for the cluster-wide lock of `job` and holds it until the guard is dropped:
    /// one process at a time across every server sharing the datastore.
    async fn lock(&self, job: Job) -> Result<JobLock>;
    /// Changes other processes make (never this store's own), when the datastore can be
    /// shared; `None` for the embedded one, whose only writer is this process.
    fn changes(&self) -> Option<tokio::sync::broadcast::Receiver<Change>>;

    /// Closes every connection, waiting for those in use; SQLite then folds its
    /// write-ahead log into the database file.
    async fn close(&self);
}
