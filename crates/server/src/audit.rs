//! The audit log: every change and every refusal, written so that untrusted input cannot
//! fill the disk or forge entries.
//!
//! - Every field is bounded before it is stored or logged: control characters are escaped
//!   (a newline in a certificate subject is `\n`, never a line break) and text is cut to
//!   [`MAX_FIELD`] characters ([`MAX_DETAIL`] for the detail; see [`crate::text`]), saying how much was cut.
//! - Refusals of callers who did not prove an identity are aggregated per source (an IPv4
//!   address or an IPv6 /64), action and reason: the first in each [`WINDOW`] is written in
//!   full, the others are counted and written as one summary row when the window closes.
//!   So one source writes at most two rows per action and reason a minute, each at most
//!   about 3 KiB, however fast it is refused.
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use evergreen_pki::{Duration, OffsetDateTime};
use evergreen_store::AuditEvent;

use crate::text::{MAX_DETAIL, MAX_FIELD, bounded};

/// How long refusals of one anonymous source, action and reason share one summary row.
pub const WINDOW: Duration = Duration::minutes(1);
/// The most sources tracked at once; past it, new sources share one entry.
const MAX_SOURCES: usize = 4096;

/// An audit event with every field bounded.
pub fn event(
    at: OffsetDateTime,
    actor: &str,
    action: &str,
    target: &str,
    outcome: &str,
    detail: &str,
) -> AuditEvent {
    AuditEvent {
        at: at.unix_timestamp(),
        actor: bounded(actor, MAX_FIELD),
        action: bounded(action, MAX_FIELD),
        target: bounded(target, MAX_FIELD),
        outcome: outcome.to_owned(),
        detail: bounded(detail, MAX_DETAIL),
    }
}

/// Who an aggregated refusal came from: an IPv4 address, or the /64 of an IPv6 one (a
/// host holds a whole /64); `None` once too many sources are tracked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Source(Option<IpAddr>);

impl Source {
    fn of(ip: IpAddr) -> Self {
        Source(Some(source_of(ip)))
    }
}

/// The source a peer's address belongs to for limits and aggregation: an IPv4 address
/// (an IPv4-mapped IPv6 one too), or the /64 of an IPv6 address, which one host can hold
/// whole.
pub fn source_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(segments.into())
            }
        },
        v4 => v4,
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(IpAddr::V6(v6)) => write!(f, "{v6}/64"),
            Some(v4) => write!(f, "{v4}"),
            None => f.write_str("other sources"),
        }
    }
}

type Key = (Source, String, &'static str);

#[derive(Debug)]
struct Window {
    started: OffsetDateTime,
    suppressed: u64,
}

/// The aggregation of anonymous refusals (see the module documentation).
#[derive(Debug, Default)]
pub struct Refusals {
    windows: Mutex<HashMap<Key, Window>>,
}

impl Refusals {
    /// Whether an anonymous refusal from `source` should be written in full now, with the
    /// summary of the window it closes (if that window counted others). A refusal not
    /// written is counted in its window.
    pub fn admit(
        &self,
        source: IpAddr,
        action: &str,
        reason: &'static str,
        now: OffsetDateTime,
    ) -> (bool, Option<AuditEvent>) {
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let mut key = (Source::of(source), action.to_owned(), reason);
        if !windows.contains_key(&key) && windows.len() >= MAX_SOURCES {
            key.0 = Source(None);
        }
        match windows.get_mut(&key) {
            Some(window) if now < window.started + WINDOW => {
                window.suppressed += 1;
                (false, None)
            }
            Some(window) => {
                let summary = summary(&key, window, now);
                *window = Window {
                    started: now,
                    suppressed: 0,
                };
                (true, summary)
            }
            None => {
                windows.insert(
                    key,
                    Window {
                        started: now,
                        suppressed: 0,
                    },
                );
                (true, None)
            }
        }
    }

    /// Closes every window that has ended: their summaries, to be written.
    pub fn flush(&self, now: OffsetDateTime) -> Vec<AuditEvent> {
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let mut summaries = Vec::new();
        windows.retain(|key, window| {
            if now < window.started + WINDOW {
                return true;
            }
            summaries.extend(summary(key, window, now));
            false
        });
        summaries
    }
}

fn summary(key: &Key, window: &Window, now: OffsetDateTime) -> Option<AuditEvent> {
    let (source, action, reason) = key;
    (window.suppressed > 0).then(|| {
        event(
            now,
            &format!("anonymous from {source}"),
            action,
            "-",
            "refused",
            &format!(
                "{} more refusals ({reason}) since {}, aggregated",
                window.suppressed,
                crate::text::rfc3339(window.started.unix_timestamp())
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untrusted_text_is_escaped_and_cut() {
        assert_eq!(bounded("CN=a\nforged line", 100), "CN=a\\nforged line");
        assert_eq!(bounded("\u{1b}[31mred", 100), "\\u{1b}[31mred");
        let long = "x".repeat(60_000);
        let cut = bounded(&long, MAX_FIELD);
        assert!(cut.starts_with(&"x".repeat(MAX_FIELD)));
        assert!(cut.ends_with("…(+59744 bytes)"), "{cut}");
        assert!(cut.len() < MAX_FIELD + 20);
    }

    #[test]
    fn refusals_of_one_source_share_a_window() {
        let refusals = Refusals::default();
        let t0 = OffsetDateTime::from_unix_timestamp(1_000_000).unwrap();
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "2001:db8::1".parse().unwrap();
        let b_same_64: IpAddr = "2001:db8::2".parse().unwrap();
        assert_eq!(refusals.admit(a, "renew", "expired", t0), (true, None));
        for _ in 0..1000 {
            assert_eq!(refusals.admit(a, "renew", "expired", t0), (false, None));
        }
        assert!(
            refusals.admit(a, "renew", "revoked", t0).0,
            "another reason"
        );
        assert!(
            refusals.admit(b, "renew", "expired", t0).0,
            "another source"
        );
        assert!(
            !refusals.admit(b_same_64, "renew", "expired", t0).0,
            "same /64"
        );
        let later = t0 + WINDOW;
        let (written, summary) = refusals.admit(a, "renew", "expired", later);
        assert!(written);
        let summary = summary.unwrap();
        assert!(
            summary.detail.starts_with("1000 more refusals (expired)"),
            "{summary:?}"
        );
        assert_eq!(summary.actor, "anonymous from 127.0.0.2");
        let flushed = refusals.flush(later);
        assert_eq!(flushed.len(), 1, "{flushed:?}");
        assert_eq!(flushed[0].actor, "anonymous from 2001:db8::/64");
    }
}
