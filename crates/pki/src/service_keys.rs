//! Service-account signing keys: a key set whose first key signs and whose every key
//! verifies. Rotation puts a new key first and keeps the old ones, so tokens signed before
//! keep verifying until their key is retired. Published as a JWKS (RFC 7517).
use base64::Engine as _;
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey as ParsedKey;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::Error;
use crate::certificate::Fingerprint;
use crate::key::{KeyType, PrivateKey, PublicKey};

/// The keys, the signing one first. Never empty.
#[derive(Debug)]
pub struct ServiceKeys {
    keys: Vec<PrivateKey>,
}

impl ServiceKeys {
    /// A set of one new key.
    pub fn generate(key_type: KeyType) -> Result<Self, Error> {
        Ok(ServiceKeys {
            keys: vec![PrivateKey::generate(key_type)?],
        })
    }

    /// Reads every private key in PEM text (k3s's `service.key` holds one or more); the
    /// first signs.
    pub fn from_pem(what: &str, text: &[u8]) -> Result<Self, Error> {
        let mut keys = Vec::new();
        for (index, item) in PrivateKeyDer::pem_slice_iter(text).enumerate() {
            let der = item.map_err(|e| Error::Pem {
                what: format!("{what}, key {}", index + 1),
                reason: e.to_string(),
            })?;
            keys.push(PrivateKey::from_der(
                &format!("{what}, key {}", index + 1),
                der,
            )?);
        }
        if keys.is_empty() {
            return Err(Error::Pem {
                what: what.to_owned(),
                reason: "holds no PEM private key".into(),
            });
        }
        Ok(ServiceKeys { keys })
    }

    /// Every key as PEM, the signing key first.
    pub fn to_pem(&self) -> String {
        self.keys.iter().map(PrivateKey::to_pem).collect()
    }

    /// The key that signs new tokens.
    pub fn signer(&self) -> &PrivateKey {
        &self.keys[0]
    }

    pub fn public_keys(&self) -> Vec<PublicKey> {
        self.keys.iter().map(PrivateKey::public_key).collect()
    }

    /// A new signing key first, every current key kept for verification.
    pub fn rotated(&self, key_type: KeyType) -> Result<Self, Error> {
        let mut keys = vec![PrivateKey::generate(key_type)?];
        for key in &self.keys {
            keys.push(key.try_clone()?);
        }
        Ok(ServiceKeys { keys })
    }

    /// The set without the key `kid`. The signing key cannot be retired (rotate first),
    /// and an unknown kid is an error naming the known ones.
    pub fn retired(&self, kid: &str) -> Result<Self, String> {
        let kids: Vec<String> = self.public_keys().iter().map(key_id).collect();
        let Some(index) = kids.iter().position(|k| k == kid) else {
            return Err(format!(
                "no service-account key with kid {kid:?}; the keys are {}",
                kids.join(", ")
            ));
        };
        if index == 0 {
            return Err(format!(
                "{kid} is the signing key; rotate first (evergreen keys rotate service-account), then retire it"
            ));
        }
        let keys = self
            .keys
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != index)
            .map(|(_, k)| k.try_clone())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        Ok(ServiceKeys { keys })
    }
}

/// The key id: base64url (no padding) of the SHA-256 of the DER SubjectPublicKeyInfo, as
/// Kubernetes derives it.
pub fn key_id(key: &PublicKey) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Fingerprint::of(key.spki_der()).0)
}

/// The members of a public key's JWK (RFC 7517/7518/8037), in order: `kty`, the key's
/// parameters, then `kid`, `use` and `alg`.
pub fn jwk(key: &PublicKey) -> Result<Vec<(&'static str, String)>, Error> {
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let der_error = |reason: String| Error::Der {
        what: "service-account public key".into(),
        reason,
    };
    let (_, spki) =
        SubjectPublicKeyInfo::from_der(key.spki_der()).map_err(|e| der_error(e.to_string()))?;
    let raw = spki.subject_public_key.data.as_ref();
    let mut members = Vec::new();
    let alg = match key.key_type() {
        KeyType::EcP256 | KeyType::EcP384 => {
            let (crv, alg, size) = if key.key_type() == KeyType::EcP256 {
                ("P-256", "ES256", 32)
            } else {
                ("P-384", "ES384", 48)
            };
            // Uncompressed point: 0x04 || X || Y.
            if raw.len() != 1 + 2 * size || raw[0] != 4 {
                return Err(der_error("not an uncompressed EC point".into()));
            }
            members.push(("kty", "EC".to_owned()));
            members.push(("crv", crv.to_owned()));
            members.push(("x", b64(&raw[1..=size])));
            members.push(("y", b64(&raw[1 + size..])));
            alg
        }
        KeyType::Ed25519 => {
            members.push(("kty", "OKP".to_owned()));
            members.push(("crv", "Ed25519".to_owned()));
            members.push(("x", b64(raw)));
            "EdDSA"
        }
        _ => {
            let Ok(ParsedKey::RSA(rsa)) = spki.parsed() else {
                return Err(der_error("not an RSA public key".into()));
            };
            let unsigned = |n: &[u8]| {
                let start = n.iter().position(|b| *b != 0).unwrap_or(n.len());
                b64(&n[start..])
            };
            members.push(("kty", "RSA".to_owned()));
            members.push(("n", unsigned(rsa.modulus)));
            members.push(("e", unsigned(rsa.exponent)));
            "RS256"
        }
    };
    members.push(("kid", key_id(key)));
    members.push(("use", "sig".to_owned()));
    members.push(("alg", alg.to_owned()));
    Ok(members)
}
