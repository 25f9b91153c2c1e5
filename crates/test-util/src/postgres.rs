//! The throwaway PostgreSQL that `scripts/test` starts (`scripts/postgres start`), whose
//! admin URL is in `EVERGREEN_TEST_POSTGRES`. Tests that need it are never skipped: without
//! it they fail and say how to start one.
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// The admin URL of the test PostgreSQL.
pub fn admin_url() -> String {
    std::env::var("EVERGREEN_TEST_POSTGRES").unwrap_or_else(|_| {
        panic!(
            "this test needs PostgreSQL: run ./scripts/test, which starts a throwaway one, or \
             eval \"$(scripts/postgres start)\" before cargo test"
        )
    })
}

/// A new, empty database; its URL.
pub async fn fresh_database() -> String {
    let admin = admin_url();
    let name = format!(
        "evergreen_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
        .await
        .expect("connect to the test PostgreSQL");
    sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create a test database");
    let (base, _) = admin.rsplit_once('/').expect("a URL with a database");
    format!("{base}/{name}")
}

/// Every row of every table of the database at `url`, as text in a fixed order: what a
/// change that failed must leave exactly as it was.
pub async fn dump(url: &str) -> String {
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(url)
        .await
        .expect("connect to the test database");
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::TEXT FROM information_schema.tables \
         WHERE table_schema = 'public' ORDER BY table_name",
    )
    .fetch_all(&mut conn)
    .await
    .expect("list tables");
    let mut out = String::new();
    for table in tables {
        let rows: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT row_to_json(t)::TEXT FROM {table} t ORDER BY row_to_json(t)::TEXT"
        ))
        .fetch_all(&mut conn)
        .await
        .expect("dump a table");
        out.push_str(&format!("-- {table}\n"));
        for row in rows {
            out.push_str(&row);
            out.push('\n');
        }
    }
    out
}
