//! Join tokens: `EVG10<sha256 of the root CA's DER, 64 hex>::<id>.<secret>`.
//!
//! The hash lets a new node trust the server before it has any certificate: it fetches the
//! CA bundle anonymously and accepts it only if its root hashes to the pinned value. Role
//! CAs can rotate under the same root without new tokens.
use std::fmt;
use std::str::FromStr;

use rustls_pki_types::CertificateDer;

use crate::TokenError;
use crate::certificate::{CertificateInfo, Fingerprint};

pub const PREFIX: &str = "EVG10";

const ID_LEN: usize = 6;
const SECRET_LEN: usize = 16;
const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    root_hash: Fingerprint,
    id: String,
    secret: String,
}

impl JoinToken {
    pub fn new(root_hash: Fingerprint, id: String, secret: String) -> Result<Self, TokenError> {
        check_part(&id, TokenError::EmptyId)?;
        check_part(&secret, TokenError::EmptySecret)?;
        Ok(JoinToken {
            root_hash,
            id,
            secret,
        })
    }

    /// A new token for the root `root`, with a random 6-character id and 16-character
    /// secret (about 82 bits).
    pub fn generate(root: &CertificateDer<'_>) -> Result<Self, crate::Error> {
        Ok(JoinToken {
            root_hash: Fingerprint::of(root),
            id: random_string(ID_LEN)?,
            secret: random_string(SECRET_LEN)?,
        })
    }

    pub fn root_hash(&self) -> Fingerprint {
        self.root_hash
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// Accepts a CA bundle only if it holds a self-signed root whose DER hashes to the
    /// pinned value.
    pub fn verify_bundle(&self, bundle: &[CertificateDer<'_>]) -> Result<(), TokenError> {
        let roots: Vec<Fingerprint> = bundle
            .iter()
            .filter_map(|c| CertificateInfo::from_der(c).ok())
            .filter(|i| i.self_signed)
            .map(|i| i.fingerprint)
            .collect();
        if roots.contains(&self.root_hash) {
            return Ok(());
        }
        Err(TokenError::RootMismatch {
            expected: self.root_hash.to_string(),
            found: if roots.is_empty() {
                "no root CA".into()
            } else {
                roots
                    .iter()
                    .map(|r| format!("sha256:{r}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        })
    }
}

fn check_part(part: &str, empty: TokenError) -> Result<(), TokenError> {
    if part.is_empty() {
        return Err(empty);
    }
    if !part
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(TokenError::BadCharacter);
    }
    Ok(())
}

/// A random string of lowercase letters and digits from the system's secure random
/// source: about 5.17 bits per character.
pub fn random_string(len: usize) -> Result<String, crate::Error> {
    // Rejection sampling keeps every character equally likely.
    let mut out = String::with_capacity(len);
    let limit = 256 - (256 % ALPHABET.len());
    while out.len() < len {
        let mut buf = [0u8; 32];
        aws_lc_rs::rand::fill(&mut buf).map_err(|_| crate::Error::Crypto {
            what: "token generation",
            reason: "the system random source failed".into(),
        })?;
        for b in buf {
            if (b as usize) < limit && out.len() < len {
                out.push(ALPHABET[b as usize % ALPHABET.len()] as char);
            }
        }
    }
    Ok(out)
}

impl FromStr for JoinToken {
    type Err = TokenError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let Some(rest) = s.strip_prefix(PREFIX) else {
            return Err(TokenError::WrongPrefix {
                expected: PREFIX,
                found: s.chars().take(PREFIX.len()).collect(),
            });
        };
        let (hash, credential) = rest.split_once("::").ok_or(TokenError::MissingSeparator)?;
        if hash.len() != 64 {
            return Err(TokenError::HashLength { found: hash.len() });
        }
        let root_hash = Fingerprint::from_hex(hash).ok_or(TokenError::HashNotHex)?;
        let (id, secret) = credential.split_once('.').ok_or(TokenError::MissingDot)?;
        JoinToken::new(root_hash, id.to_owned(), secret.to_owned())
    }
}

impl fmt::Display for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}::{}.{}", self.root_hash, self.id, self.secret)
    }
}

impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinToken")
            .field("root_hash", &self.root_hash)
            .field("id", &self.id)
            .field("secret", &"[elided]")
            .finish()
    }
}
