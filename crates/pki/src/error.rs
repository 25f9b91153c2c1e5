use crate::name::DistinguishedName;

/// Everything that can go wrong in the PKI core.
///
/// Messages say what was wrong and, where there is one, what to do about it. Callers that
/// must branch (an HTTP status, a CLI exit code) match on the typed inner errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Text that should hold PEM does not, or holds a broken section.
    #[error("{what} {reason}")]
    Pem { what: String, reason: String },
    /// A DER structure does not parse.
    #[error("{what} is not valid DER: {reason}")]
    Der { what: String, reason: String },
    /// A key of a type Evergreen does not issue for or sign with.
    #[error("unsupported key: {0}")]
    UnsupportedKey(String),
    /// A private key that does not belong to the certificate it was given with.
    #[error(
        "the private key does not match the certificate {subject}: they have different public keys"
    )]
    KeyMismatch { subject: DistinguishedName },
    /// A certificate used as an issuer that may not issue.
    #[error("certificate {subject} cannot issue certificates: {reason}")]
    NotAnIssuer {
        subject: DistinguishedName,
        reason: String,
    },
    /// An issuer or certificate outside its validity period.
    #[error("certificate {subject} {reason}")]
    Validity {
        subject: DistinguishedName,
        reason: String,
    },
    /// A name that cannot be encoded as given.
    #[error("name {name}: {reason}")]
    Name { name: String, reason: String },
    #[error(transparent)]
    Csr(#[from] CsrError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Token(#[from] TokenError),
    /// A chain that does not verify to the given trust anchors.
    #[error("certificate {subject}: {reason}")]
    Chain {
        subject: DistinguishedName,
        reason: String,
    },
    /// The underlying signer or encoder failed; not expected with valid inputs.
    #[error("{what} failed: {reason}")]
    Crypto { what: &'static str, reason: String },
}

/// A CSR that cannot be used, whatever the policy.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CsrError {
    #[error("CSR is not valid: {0}")]
    Malformed(String),
    #[error(
        "CSR signature does not verify with the CSR's own public key: the request was altered or signed with another key"
    )]
    BadSignature,
    #[error(
        "CSR is signed with {0}, which is too weak; sign it with SHA-256 (openssl req -sha256)"
    )]
    WeakSignature(String),
    #[error(
        "CSR key is not supported: {0}; use ec-p256, ec-p384, ed25519 or RSA with 2048, 3072 or 4096 bits"
    )]
    UnsupportedKey(String),
    #[error("CSR requests subject alternative names that cannot be read: {0}")]
    BadSubjectAltNames(String),
}

/// A well-formed CSR that the policy refuses.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    #[error("CSR subject {} does not match the certificate subject {expected} ({detail})", .requested.abbreviated(200))]
    SubjectMismatch {
        requested: DistinguishedName,
        expected: DistinguishedName,
        detail: String,
    },
    #[error("CSR subject is empty; give it at least a common name (CN)")]
    EmptySubject,
    /// A subject that cannot be issued: too long, a control character, too many attributes.
    #[error("CSR subject {} cannot be issued: {reason}", .subject.abbreviated(80))]
    BadSubject {
        subject: DistinguishedName,
        reason: String,
    },
    /// A subject outside what the caller may ask for (a token's subject or name pattern).
    #[error("CSR subject {} is not one this request may have: {reason}", .requested.abbreviated(80))]
    SubjectNotAllowed {
        requested: DistinguishedName,
        reason: String,
    },
    /// A requested name that is not a syntactically valid DNS name, IP, email or URI.
    #[error("CSR requests subject alternative name {requested:?}, which is not valid: {reason}")]
    BadSan { requested: String, reason: String },
    #[error(
        "CSR requests subject alternative name {requested}, which is not allowed here (allowed: {allowed})"
    )]
    SanNotAllowed { requested: String, allowed: String },
    #[error(
        "a {profile} certificate needs at least one subject alternative name (DNS name or IP address); the CSR requests none"
    )]
    NoSubjectAltNames { profile: String },
}

/// A join token that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenError {
    #[error("join token must start with {expected}; it starts with {found:?}")]
    WrongPrefix {
        expected: &'static str,
        found: String,
    },
    #[error(
        "join token has no '::' between the CA hash and the credential (EVG10<hash>::<id>.<secret>)"
    )]
    MissingSeparator,
    #[error(
        "join token CA hash must be 64 hex digits (SHA-256 of the root CA); it has {found} characters"
    )]
    HashLength { found: usize },
    #[error("join token CA hash must be hex digits only")]
    HashNotHex,
    #[error("join token credential must be <id>.<secret>; the '.' is missing")]
    MissingDot,
    #[error("join token id is empty")]
    EmptyId,
    #[error("join token secret is empty")]
    EmptySecret,
    #[error("join token id and secret may hold only letters, digits, '-' and '_'")]
    BadCharacter,
    #[error(
        "the server's CA does not match the join token: the token pins root sha256:{expected}, the server presents {found}"
    )]
    RootMismatch { expected: String, found: String },
}
