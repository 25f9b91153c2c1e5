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
