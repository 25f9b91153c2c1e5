//! Reading records out of rows, once for both databases.
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{Database, Encode, QueryBuilder, Row, Type};

use crate::{
    Acknowledgement, ActiveCount, AuditEvent, CaRecord, CertificateRecord, InventoryQuery,
    NamedRecord, NamedVersion, NodeRecord, Result, StoreError, TokenRecord,
};

/// The column types Evergreen stores, read by name.
pub(crate) trait Columns {
    fn text(&self, column: &str) -> Result<String>;
    fn text_opt(&self, column: &str) -> Result<Option<String>>;
    fn int(&self, column: &str) -> Result<i64>;
    fn int_opt(&self, column: &str) -> Result<Option<i64>>;
    fn bytes(&self, column: &str) -> Result<Vec<u8>>;
    fn bytes_opt(&self, column: &str) -> Result<Option<Vec<u8>>>;
    fn flag(&self, column: &str) -> Result<bool>;
    fn flag_opt(&self, column: &str) -> Result<Option<bool>>;
}

macro_rules! columns {
    ($row:ty) => {
        impl Columns for $row {
            fn text(&self, column: &str) -> Result<String> {
                Ok(self.try_get(column)?)
            }
            fn text_opt(&self, column: &str) -> Result<Option<String>> {
                Ok(self.try_get(column)?)
            }
            fn int(&self, column: &str) -> Result<i64> {
                Ok(self.try_get(column)?)
            }
            fn int_opt(&self, column: &str) -> Result<Option<i64>> {
                Ok(self.try_get(column)?)
            }
            fn bytes(&self, column: &str) -> Result<Vec<u8>> {
                Ok(self.try_get(column)?)
            }
            fn bytes_opt(&self, column: &str) -> Result<Option<Vec<u8>>> {
                Ok(self.try_get(column)?)
            }
            fn flag(&self, column: &str) -> Result<bool> {
                Ok(self.try_get(column)?)
            }
            fn flag_opt(&self, column: &str) -> Result<Option<bool>> {
                Ok(self.try_get(column)?)
            }
        }
    };
}

columns!(SqliteRow);
columns!(PgRow);

/// A comma-separated list as stored.
pub(crate) fn split(list: &str) -> Vec<String> {
    list.split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

pub(crate) fn ca(row: &impl Columns) -> Result<CaRecord> {
    Ok(CaRecord {
        name: row.text("name")?,
        bundle_pem: row.text("bundle_pem")?,
        sealed_key: row.bytes_opt("sealed_key")?,
        updated_at: row.int("updated_at")?,
    })
}

pub(crate) fn certificate(row: &impl Columns) -> Result<CertificateRecord> {
    Ok(CertificateRecord {
        serial: row.text("serial")?,
        sha256: row.text("sha256")?,
        subject: row.text("subject")?,
        sans: split(&row.text("sans")?),
        profile: row.text("profile")?,
        role: row.text("role")?,
        issuer: row.text("issuer")?,
        owner: row.text("owner")?,
        not_before: row.int("not_before")?,
        not_after: row.int("not_after")?,
        issued_at: row.int("issued_at")?,
        renewed_from: row.text_opt("renewed_from")?,
        revoked_at: row.int_opt("revoked_at")?,
        revocation_reason: row.text_opt("revocation_reason")?,
        superseded_by: row.text_opt("superseded_by")?,
        der: row.bytes("der")?,
    })
}

pub(crate) fn token(row: &impl Columns) -> Result<TokenRecord> {
    Ok(TokenRecord {
        id: row.text("id")?,
        secret_sha256: row.text("secret_sha256")?,
        role: row.text("role")?,
        created_at: row.int("created_at")?,
        expires_at: row.int_opt("expires_at")?,
        uses: row.int("uses")?,
        max_uses: row.int_opt("max_uses")?,
        node: row.text_opt("node")?,
        node_pattern: row.text_opt("node_pattern")?,
        subject: row.text_opt("subject")?,
        description: row.text("description")?,
    })
}

pub(crate) fn audit(row: &impl Columns) -> Result<AuditEvent> {
    Ok(AuditEvent {
        at: row.int("at")?,
        actor: row.text("actor")?,
        action: row.text("action")?,
        target: row.text("target")?,
        outcome: row.text("outcome")?,
        detail: row.text("detail")?,
    })
}

pub(crate) fn named(row: &impl Columns) -> Result<NamedRecord> {
    let keys = split(&row.text("secret_keys")?);
    let key = |i: usize, default: &str| keys.get(i).cloned().unwrap_or_else(|| default.to_owned());
    Ok(NamedRecord {
        name: row.text("name")?,
        scope: row.text("scope")?,
        kind: row.text("kind")?,
        label: row.text("label")?,
        internal: row.flag("internal")?,
        usage: row.text("usage")?,
        sans: split(&row.text("sans")?),
        nodes: split(&row.text("nodes")?),
        secret_path: row.text_opt("secret_path")?,
        secret_keys: [key(0, "cert"), key(1, "key"), key(2, "cacert")],
        allowed_dns: split(&row.text("allowed_dns")?),
        allowed_cidrs: split(&row.text("allowed_cidrs")?),
        version: row.int("version")?,
        created_at: row.int("created_at")?,
        updated_at: row.int("updated_at")?,
    })
}

pub(crate) fn named_version(row: &impl Columns) -> Result<NamedVersion> {
    Ok(NamedVersion {
        name: row.text("name")?,
        version: row.int("version")?,
        chain_pem: row.text_opt("chain_pem")?,
        sealed_key: row.bytes_opt("sealed_key")?,
        ca_pem: row.text_opt("ca_pem")?,
        fingerprint: row.text_opt("fingerprint")?,
        not_after: row.int_opt("not_after")?,
        reason: row.text("reason")?,
        created_at: row.int("created_at")?,
    })
}

pub(crate) fn acknowledgement(row: &impl Columns) -> Result<Acknowledgement> {
    Ok(Acknowledgement {
        node: row.text("node")?,
        name: row.text("name")?,
        version: row.int("version")?,
        fingerprint: row.text("fingerprint")?,
        at: row.int("at")?,
        served: row.flag_opt("served")?,
    })
}

pub(crate) fn node(row: &impl Columns) -> Result<NodeRecord> {
    Ok(NodeRecord {
        name: row.text("name")?,
        addresses: split(&row.text("addresses")?),
        updated_at: row.int("updated_at")?,
    })
}

/// The first live certificate among `holders` (certificates of one subject) whose role
/// is one of `exclusive_of`.
pub(crate) fn conflicting_holder(
    holders: Vec<CertificateRecord>,
    exclusive_of: &[String],
    now: i64,
) -> Option<CertificateRecord> {
    holders
        .into_iter()
        .find(|c| c.revoked_at.is_none() && c.not_after >= now && exclusive_of.contains(&c.role))
}

/// Compares secrets (hashes) in time independent of where they differ.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The live-certificate counts' query, in either database's placeholders.
pub(crate) fn active_counts_query<'a, DB>(now: i64) -> QueryBuilder<'a, DB>
where
    DB: Database,
    i64: Encode<'a, DB> + Type<DB>,
{
    let mut sql = QueryBuilder::new(
        "SELECT role, issuer, COUNT(*) AS count, MIN(not_after) AS soonest FROM certificates \
         WHERE revoked_at IS NULL AND superseded_by IS NULL AND not_after >= ",
    );
    sql.push_bind(now)
        .push(" GROUP BY role, issuer ORDER BY role, issuer");
    sql
}

pub(crate) fn active_count(row: &impl Columns) -> Result<ActiveCount> {
    Ok(ActiveCount {
        role: row.text("role")?,
        issuer: row.text("issuer")?,
        count: row.int("count")?,
        soonest_not_after: row.int("soonest")?,
    })
}

/// The inventory listing's query, in either database's placeholders.
pub(crate) fn inventory_query<'a, DB>(q: &'a InventoryQuery) -> Result<QueryBuilder<'a, DB>>
where
    DB: Database,
    i64: Encode<'a, DB> + Type<DB>,
    String: Encode<'a, DB> + Type<DB>,
{
    // One lower bound on not_after, the highest that applies, so the database starts its
    // walk of the expiry index there: with a page cursor and a status bound given apart,
    // SQLite starts at the status bound and every later page re-reads all earlier ones.
    let mut lower = None;
    let mut upper = q.not_after_before;
    let mut sql = QueryBuilder::new("SELECT * FROM certificates WHERE 1 = 1");
    match q.status.as_deref() {
        None => {}
        Some("active") => {
            sql.push(" AND revoked_at IS NULL AND superseded_by IS NULL");
            lower = Some(q.now);
        }
        Some("expired") => {
            sql.push(" AND revoked_at IS NULL AND superseded_by IS NULL");
            // not_after < now
            upper = Some(upper.map_or(q.now - 1, |u| u.min(q.now - 1)));
        }
        Some("superseded") => {
            sql.push(" AND revoked_at IS NULL AND superseded_by IS NOT NULL");
        }
        Some("revoked") => {
            sql.push(" AND revoked_at IS NOT NULL");
        }
        Some(other) => {
            return Err(StoreError::Invalid(format!(
                "unknown status {other:?}; use active, expired, superseded or revoked"
            )));
        }
    }
    if let Some((not_after, _)) = &q.after {
        lower = Some(lower.map_or(*not_after, |l: i64| l.max(*not_after)));
    }
    if let Some(lower) = lower {
        sql.push(" AND not_after >= ").push_bind(lower);
    }
    if let Some(upper) = upper {
        sql.push(" AND not_after <= ").push_bind(upper);
    }
    if let Some((not_after, serial)) = &q.after {
        sql.push(" AND (not_after, serial) > (")
            .push_bind(*not_after)
            .push(", ")
            .push_bind(serial.clone())
            .push(")");
    }
    sql.push(" ORDER BY not_after, serial LIMIT ")
        .push_bind(i64::from(q.limit));
    Ok(sql)
}
