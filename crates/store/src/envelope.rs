//! The envelope that keeps CA private keys encrypted at rest.
//!
//! AES-256-GCM under a key derived with Argon2id from the cluster secret. The sealed form
//! is versioned: `[1][12-byte nonce][ciphertext and tag]`, and the caller's associated
//! data (for example the CA's name) is authenticated, so an envelope moved to another
//! record does not open.
use std::fmt;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

const VERSION: u8 = 1;

/// Argon2id cost: 19 MiB, 2 passes, 1 lane (OWASP's recommendation). Derivation runs once
/// at start-up.
const ARGON2_MEMORY_KIB: u32 = 19 * 1024;
const ARGON2_PASSES: u32 = 2;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum EnvelopeError {
    #[error("the envelope does not open: the cluster secret is wrong, or the data was altered")]
    WrongKeyOrTampered,
    #[error("the envelope is malformed or of unknown version {0}")]
    Malformed(u8),
    #[error("key derivation failed: {0}")]
    Derivation(String),
    #[error("the system random source failed")]
    Random,
}

/// The key envelopes are sealed with. `Debug` never prints it.
pub struct SealingKey(LessSafeKey);

impl fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealingKey([elided])")
    }
}

impl SealingKey {
    /// Derives the key from the cluster secret and the datastore's salt.
    pub fn derive(secret: &[u8], salt: &[u8]) -> Result<Self, EnvelopeError> {
        let params = argon2::Params::new(ARGON2_MEMORY_KIB, ARGON2_PASSES, 1, Some(32))
            .map_err(|e| EnvelopeError::Derivation(e.to_string()))?;
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut key = [0u8; 32];
        argon
            .hash_password_into(secret, salt, &mut key)
            .map_err(|e| EnvelopeError::Derivation(e.to_string()))?;
        let unbound = UnboundKey::new(&AES_256_GCM, &key)
            .map_err(|_| EnvelopeError::Derivation("AES key".into()))?;
        key.fill(0);
        Ok(SealingKey(LessSafeKey::new(unbound)))
    }

    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|_| EnvelopeError::Random)?;
        let mut buf = plaintext.to_vec();
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut buf,
            )
            .map_err(|_| EnvelopeError::Random)?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + buf.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buf);
        Ok(out)
    }

    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
        match sealed.first() {
            Some(&VERSION) if sealed.len() > 1 + NONCE_LEN => {}
            Some(&v) => return Err(EnvelopeError::Malformed(v)),
            None => return Err(EnvelopeError::Malformed(0)),
        }
        let nonce: [u8; NONCE_LEN] = sealed[1..1 + NONCE_LEN]
            .try_into()
            .map_err(|_| EnvelopeError::Malformed(VERSION))?;
        let mut buf = sealed[1 + NONCE_LEN..].to_vec();
        let plain = self
            .0
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut buf,
            )
            .map_err(|_| EnvelopeError::WrongKeyOrTampered)?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_data_opens_only_with_the_same_secret_salt_and_aad() {
        let key = SealingKey::derive(b"cluster secret", b"salt-0123456789").unwrap();
        let sealed = key.seal(b"private key", b"ca:client-ca").unwrap();
        assert_eq!(sealed[0], 1);
        assert!(!sealed.windows(11).any(|w| w == b"private key"));
        assert_eq!(key.open(&sealed, b"ca:client-ca").unwrap(), b"private key");
        assert_eq!(
            key.open(&sealed, b"ca:server-ca"),
            Err(EnvelopeError::WrongKeyOrTampered)
        );
        let other = SealingKey::derive(b"wrong secret", b"salt-0123456789").unwrap();
        assert_eq!(
            other.open(&sealed, b"ca:client-ca"),
            Err(EnvelopeError::WrongKeyOrTampered)
        );
        let mut altered = sealed.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert_eq!(
            key.open(&altered, b"ca:client-ca"),
            Err(EnvelopeError::WrongKeyOrTampered)
        );
        assert_eq!(key.open(&[2, 0], b""), Err(EnvelopeError::Malformed(2)));
        assert_ne!(
            key.seal(b"x", b"").unwrap(),
            key.seal(b"x", b"").unwrap(),
            "fresh nonces"
        );
        assert_eq!(format!("{key:?}"), "SealingKey([elided])");
    }
}
