//! When a certificate is due for renewal.
use time::{Duration, OffsetDateTime};

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
