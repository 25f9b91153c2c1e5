//! Counters for `/metrics`, in the Prometheus text format.
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::Reason;

#[derive(Debug, Default)]
pub struct Metrics {
    pub issued: AtomicU64,
    pub renewed: AtomicU64,
    pub enrolled: AtomicU64,
    pub revoked: AtomicU64,
    pub handshake_failures: AtomicU64,
    /// Connections closed at once because a connection limit was reached.
    pub shed: AtomicU64,
    /// Agents waiting in a watch now (a gauge).
    pub watches: AtomicU64,
    refused: Mutex<BTreeMap<Reason, u64>>,
}

impl Metrics {
    /// Counts a refusal by a short, stable reason label.
    pub fn refuse(&self, reason: Reason) {
        *self
            .refused
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(reason)
            .or_default() += 1;
    }

    pub fn render_counters(&self, out: &mut String) {
        let counters = [
            (
                "evergreen_certificates_issued_total",
                "Certificates issued, renewals included.",
                &self.issued,
            ),
            (
                "evergreen_certificates_renewed_total",
                "Certificates issued by renewal.",
                &self.renewed,
            ),
            (
                "evergreen_enrollments_total",
                "Certificates issued by enrollment with a join token.",
                &self.enrolled,
            ),
            (
                "evergreen_certificates_revoked_total",
                "Certificates revoked.",
                &self.revoked,
            ),
            (
                "evergreen_tls_handshake_failures_total",
                "TLS handshakes that failed or timed out.",
                &self.handshake_failures,
            ),
            (
                "evergreen_connections_shed_total",
                "Connections closed at once because a connection limit was reached.",
                &self.shed,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                value.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP evergreen_agent_watches Agents waiting in a watch now.\n# TYPE evergreen_agent_watches gauge\nevergreen_agent_watches {}",
            self.watches.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP evergreen_requests_refused_total Requests refused, by reason.\n# TYPE evergreen_requests_refused_total counter"
        );
        // Every reason, counted or not: an alert on a rate sees a series from the start.
        let refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        for reason in Reason::ALL {
            let n = refused.get(reason).copied().unwrap_or(0);
            let _ = writeln!(
                out,
                "evergreen_requests_refused_total{{reason=\"{reason}\"}} {n}"
            );
        }
    }
}

/// Counts one waiting watch for as long as it lives.
#[derive(Debug)]
pub struct Watching<'a>(&'a AtomicU64);

impl<'a> Watching<'a> {
    pub fn start(gauge: &'a AtomicU64) -> Self {
        gauge.fetch_add(1, Ordering::Relaxed);
        Watching(gauge)
    }
}

impl Drop for Watching<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Escapes a Prometheus label value.
pub fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_reason_is_a_series_from_the_start() {
        let metrics = Metrics::default();
        metrics.refuse(Reason::BadToken);
        metrics.refuse(Reason::BadToken);
        let mut out = String::new();
        metrics.render_counters(&mut out);
        assert!(out.contains("evergreen_requests_refused_total{reason=\"bad_token\"} 2\n"));
        assert!(out.contains("evergreen_requests_refused_total{reason=\"admin_lockout\"} 0\n"));
        let labels: std::collections::BTreeSet<&str> =
            Reason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(labels.len(), Reason::ALL.len(), "labels are unique");
        for label in labels {
            assert!(
                label.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{label}"
            );
            assert_eq!(out.matches(&format!("{{reason=\"{label}\"}}")).count(), 1);
        }
    }
}
