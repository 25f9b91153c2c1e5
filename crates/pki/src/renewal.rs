//! When a certificate is due for renewal.
use rustls_pki_types::CertificateDer;
use time::{Duration, OffsetDateTime};

use crate::certificate::{CertificateInfo, SubjectAltName};
use crate::chain::is_signed_by;

/// Renewal policy: renew when expired, or when the time left is under the renewal window.
///
/// The window is `renew_before` (90 days by default, as k3s does for its 365-day leaves),
/// but never more than a third of the certificate's lifetime: a 92-day application
/// certificate renews with about 30 days left, a one-day certificate with 8 hours left,
/// instead of being due from the moment it is issued.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RenewalPolicy {
    pub renew_before: Duration,
    /// Up to this fraction of the window, renewal is moved earlier at random, so a fleet
    /// issued at one moment does not renew at one moment.
    pub jitter: f64,
}

impl Default for RenewalPolicy {
    fn default() -> Self {
        RenewalPolicy {
            renew_before: Duration::days(90),
            jitter: 0.1,
        }
    }
}

/// Where a certificate stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenewalState {
    /// Not valid yet.
    NotYetValid,
    /// Valid and outside the window; renew at the given time.
    Fresh { renew_at: OffsetDateTime },
    /// Valid, inside the renewal window: renew now.
    Due,
    /// Past not-after: renew now.
    Expired,
}

impl RenewalState {
    pub fn needs_renewal(self) -> bool {
        matches!(self, RenewalState::Due | RenewalState::Expired)
    }
}

/// A source of randomness for jitter, injected so tests choose it.
pub trait Jitter {
    /// A number in `[0, 1)`.
    fn fraction(&mut self) -> f64;
}

/// Jitter from the system's secure random source.
#[derive(Debug, Default, Clone, Copy)]
pub struct RandomJitter;

impl Jitter for RandomJitter {
    fn fraction(&mut self) -> f64 {
        let mut b = [0u8; 4];
        if aws_lc_rs::rand::fill(&mut b).is_err() {
            return 0.0;
        }
        f64::from(u32::from_be_bytes(b)) / (f64::from(u32::MAX) + 1.0)
    }
}

/// A fixed fraction: for tests, and for "no jitter" (0.0).
#[derive(Debug, Clone, Copy)]
pub struct FixedJitter(pub f64);

impl Jitter for FixedJitter {
    fn fraction(&mut self) -> f64 {
        self.0.clamp(0.0, 1.0 - f64::EPSILON)
    }
}

impl RenewalPolicy {
    /// The renewal window of a certificate with this validity.
    pub fn window(&self, not_before: OffsetDateTime, not_after: OffsetDateTime) -> Duration {
        let lifetime = (not_after - not_before).max(Duration::ZERO);
        self.renew_before.min(lifetime / 3)
    }

    /// The moment the window opens, without jitter.
    pub fn renew_at(
        &self,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> OffsetDateTime {
        not_after - self.window(not_before, not_after)
    }

    /// The moment to renew, moved earlier by up to `jitter` of the window.
    pub fn renew_at_with_jitter(
        &self,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
        jitter: &mut impl Jitter,
    ) -> OffsetDateTime {
        let window = self.window(not_before, not_after);
        let spread = window * self.jitter.clamp(0.0, 1.0);
        self.renew_at(not_before, not_after) - spread * jitter.fraction()
    }

    pub fn state(
        &self,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
        now: OffsetDateTime,
    ) -> RenewalState {
        if now > not_after {
            RenewalState::Expired
        } else if now < not_before {
            RenewalState::NotYetValid
        } else {
            let renew_at = self.renew_at(not_before, not_after);
            if now >= renew_at {
                RenewalState::Due
            } else {
                RenewalState::Fresh { renew_at }
            }
        }
    }
}

/// Why a certificate Evergreen manages must be issued again now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reissue {
    Unreadable,
    /// Not issued by the CA that issues it now (after a CA rotation).
    PreviousCa,
    /// Its names differ from what it should name.
    NamesChanged,
    Expired,
    /// Inside the renewal window.
    Due,
}

impl std::fmt::Display for Reissue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Reissue::Unreadable => "unreadable",
            Reissue::PreviousCa => "issued by a previous CA",
            Reissue::NamesChanged => "names changed",
            Reissue::Expired => "expired",
            Reissue::Due => "inside the renewal window",
        })
    }
}

impl RenewalPolicy {
    /// Whether `leaf` must be issued again at `now`, and why: it is not issued by
    /// `issuer` (when given), does not name exactly `names` (when given), is expired, or
    /// inside the renewal window. The server asks this of its own and its named
    /// certificates, agents of their node certificates.
    pub fn reissue(
        &self,
        leaf: &CertificateDer<'_>,
        issuer: Option<&CertificateDer<'_>>,
        names: Option<&[SubjectAltName]>,
        now: OffsetDateTime,
    ) -> Option<Reissue> {
        let Ok(info) = CertificateInfo::from_der(leaf) else {
            return Some(Reissue::Unreadable);
        };
        if let Some(issuer) = issuer
            && !is_signed_by(leaf, issuer).unwrap_or(false)
        {
            return Some(Reissue::PreviousCa);
        }
        if let Some(names) = names
            && names != info.subject_alt_names
        {
            return Some(Reissue::NamesChanged);
        }
        match self.state(info.not_before, info.not_after, now) {
            RenewalState::Expired => Some(Reissue::Expired),
            RenewalState::Due => Some(Reissue::Due),
            RenewalState::Fresh { .. } | RenewalState::NotYetValid => None,
        }
    }
}
