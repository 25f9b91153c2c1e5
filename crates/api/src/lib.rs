//! What every party of Evergreen's REST API shares: request and response types, the
//! base64-of-PEM encoding the Kyma-compatible endpoints use, the clock, and (feature
//! `client`) a small HTTPS client with client certificates.
#![forbid(unsafe_code)]

pub mod body;
#[cfg(feature = "client")]
pub mod client;
pub mod clock;
pub mod domain;
pub mod duration;
pub mod files;
pub mod query;
pub mod types;

pub use body::RequestBody;
pub use clock::{Clock, ManualClock, SystemClock};
pub use domain::{Kind, Scope, Status, Usage};
pub use types::*;
