//! Evergreen's PKI core.
//!
//! Everything a certificate authority for a cluster needs, and nothing that touches the
//! outside world: no files, no network, no async, and no clock. Callers pass the current
//! time in, so expiry and renewal logic is tested with any instant without sleeping.
//!
//! Between crates this library speaks DER (`rustls-pki-types`) and its own small types,
//! never the types of the X.509 libraries it is built on, so those can change.
//!
//! - [`key`]: key pairs of the supported types, PEM/DER in and out, key-to-certificate match.
//! - [`profile`]: what a root CA, role CA, server, client and peer certificate must carry.
//! - [`authority`]: a CA that issues certificates and CRLs.
//! - [`hierarchy`]: the cluster's root CA and its role CAs.
//! - [`csr`] and [`policy`]: what is read from a CSR, and what is decided about it.
//! - [`chain`]: building and verifying chains with rustls-webpki.
//! - [`integrity`]: the checks a staged CA must pass before it may replace the current one.
//! - [`cross_sign`]: re-signing an existing CA under another issuer.
//! - [`crl`]: revocation lists.
//! - [`renewal`]: when a certificate is due for renewal.
//! - [`san_policy`]: which names a certificate may carry.
//! - [`service_keys`]: the service-account signing key set and its JWKS.
//! - [`staged`]: a staged CA directory, in Evergreen's layout or k3s's.
//! - [`token`]: join tokens that pin the cluster's root CA.
#![forbid(unsafe_code)]

pub mod authority;
pub mod certificate;
pub mod chain;
pub mod crl;
pub mod cross_sign;
pub mod csr;
mod error;
pub mod hierarchy;
pub mod integrity;
pub mod key;
pub mod name;
pub mod pem;
pub mod policy;
pub mod profile;
pub mod renewal;
pub mod san_policy;
pub mod service_keys;
pub mod staged;
pub mod token;

pub use authority::{CertificateAuthority, IssueRequest, IssuedCertificate};
pub use certificate::{CertificateInfo, Fingerprint, SubjectAltName, Usage};
pub use csr::CertificateRequest;
pub use error::{CsrError, Error, PolicyError, TokenError};
pub use key::{KeyType, PrivateKey, PublicKey};
pub use name::DistinguishedName;
pub use profile::Profile;
pub use rustls_pki_types::{
    CertificateDer, CertificateRevocationListDer, CertificateSigningRequestDer, PrivateKeyDer,
};
pub use time::{Duration, OffsetDateTime};
