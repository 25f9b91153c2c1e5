//! The one place the binary reads the wall clock. Everything below it takes the time as a
//! value, so expiry and renewal logic is tested with any instant.
use time::OffsetDateTime;

pub trait Clock {
    fn now(&self) -> OffsetDateTime;
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(
        clippy::disallowed_methods,
        reason = "the system clock is the one allowed caller"
    )]
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}
