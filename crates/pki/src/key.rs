//! Key pairs and public keys of the types Evergreen supports.
use std::fmt;
use std::str::FromStr;

use rcgen::{PublicKeyData, SignatureAlgorithm};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey as ParsedPublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::Error;

/// The key types Evergreen generates and accepts. ECDSA P-256 is the default: fast to
/// sign and verify, and accepted everywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum KeyType {
    #[default]
    EcP256,
    EcP384,
    Ed25519,
    Rsa2048,
    Rsa3072,
    Rsa4096,
}

impl KeyType {
    pub const ALL: [KeyType; 6] = [
        KeyType::EcP256,
        KeyType::EcP384,
        KeyType::Ed25519,
        KeyType::Rsa2048,
        KeyType::Rsa3072,
        KeyType::Rsa4096,
    ];

    /// The name used on the command line and in configuration.
    pub fn name(self) -> &'static str {
        match self {
            KeyType::EcP256 => "ec-p256",
            KeyType::EcP384 => "ec-p384",
            KeyType::Ed25519 => "ed25519",
            KeyType::Rsa2048 => "rsa-2048",
            KeyType::Rsa3072 => "rsa-3072",
            KeyType::Rsa4096 => "rsa-4096",
        }
    }

    pub fn is_rsa(self) -> bool {
        matches!(self, KeyType::Rsa2048 | KeyType::Rsa3072 | KeyType::Rsa4096)
    }

    /// The signature algorithm a key of this type signs with.
    fn signature_algorithm(self) -> &'static SignatureAlgorithm {
        match self {
            KeyType::EcP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyType::EcP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            KeyType::Ed25519 => &rcgen::PKCS_ED25519,
            KeyType::Rsa2048 | KeyType::Rsa3072 | KeyType::Rsa4096 => &rcgen::PKCS_RSA_SHA256,
        }
    }

    fn from_rsa_bits(bits: usize) -> Result<KeyType, String> {
        match bits {
            2048 => Ok(KeyType::Rsa2048),
            3072 => Ok(KeyType::Rsa3072),
            4096 => Ok(KeyType::Rsa4096),
            other => Err(format!("RSA key of {other} bits")),
        }
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for KeyType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        KeyType::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = KeyType::ALL.iter().map(|k| k.name()).collect();
                format!("unknown key type {s:?}; use one of {}", names.join(", "))
            })
    }
}

/// A private key with its public half.
///
/// `Debug` never prints key material.
pub struct PrivateKey {
    pair: rcgen::KeyPair,
    der: PrivateKeyDer<'static>,
    key_type: KeyType,
}

impl PrivateKey {
    /// Generates a fresh key from the system's secure random source.
    pub fn generate(key_type: KeyType) -> Result<Self, Error> {
        let alg = key_type.signature_algorithm();
        let pair = match key_type {
            KeyType::Rsa2048 => rcgen::KeyPair::generate_rsa_for(alg, rcgen::RsaKeySize::_2048),
            KeyType::Rsa3072 => rcgen::KeyPair::generate_rsa_for(alg, rcgen::RsaKeySize::_3072),
            KeyType::Rsa4096 => rcgen::KeyPair::generate_rsa_for(alg, rcgen::RsaKeySize::_4096),
            // PKCS#8 v1: OpenSSL 3.0 cannot read the v2 form (with the public key) that
            // the default Ed25519 generation writes.
            KeyType::Ed25519 => aws_lc_rs::signature::Ed25519KeyPair::generate_pkcs8v1(
                &aws_lc_rs::rand::SystemRandom::new(),
            )
            .map_err(|_| rcgen::Error::KeyGenerationUnavailable)
            .and_then(|doc| rcgen::KeyPair::try_from(doc.as_ref())),
            _ => rcgen::KeyPair::generate_for(alg),
        }
        .map_err(|e| Error::Crypto {
            what: "key generation",
            reason: e.to_string(),
        })?;
        let der = PrivateKeyDer::Pkcs8(pair.serialize_der().into());
        Ok(PrivateKey {
            pair,
            der,
            key_type,
        })
    }

    /// Reads a PEM private key: PKCS#8, SEC1 ("EC PRIVATE KEY") or PKCS#1 ("RSA PRIVATE KEY").
    pub fn from_pem(what: &str, text: &[u8]) -> Result<Self, Error> {
        Self::from_der(what, crate::pem::parse_private_key(what, text)?)
    }

    pub fn from_der(what: &str, der: PrivateKeyDer<'static>) -> Result<Self, Error> {
        let pair = rcgen::KeyPair::try_from(&der).map_err(|e| Error::Der {
            what: what.to_owned(),
            reason: format!("not a private key of a supported type ({e})"),
        })?;
        let alg = pair.algorithm();
        let key_type = if alg == &rcgen::PKCS_ECDSA_P256_SHA256 {
            KeyType::EcP256
        } else if alg == &rcgen::PKCS_ECDSA_P384_SHA384 {
            KeyType::EcP384
        } else if alg == &rcgen::PKCS_ED25519 {
            KeyType::Ed25519
        } else if alg == &rcgen::PKCS_RSA_SHA256 {
            PublicKey::from_spki_der(&pair.subject_public_key_info())?.key_type
        } else {
            return Err(Error::UnsupportedKey(format!(
                "{what}: {alg:?} keys are not supported; use ec-p256, ec-p384, ed25519 or RSA"
            )));
        };
        Ok(PrivateKey {
            pair,
            der,
            key_type,
        })
    }

    /// A second handle on the same key, read again from its PKCS#8.
    pub fn try_clone(&self) -> Result<Self, Error> {
        Self::from_der("key", self.der.clone_key())
    }

    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// The key as PEM, in the form it was read (generated keys are PKCS#8).
    pub fn to_pem(&self) -> String {
        let label = match &self.der {
            PrivateKeyDer::Pkcs1(_) => "RSA PRIVATE KEY",
            PrivateKeyDer::Sec1(_) => "EC PRIVATE KEY",
            _ => "PRIVATE KEY",
        };
        crate::pem::encode(label, self.der.secret_der())
    }

    pub fn der(&self) -> &PrivateKeyDer<'static> {
        &self.der
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey {
            spki: self.pair.subject_public_key_info(),
            raw: self.pair.der_bytes().to_vec(),
            key_type: self.key_type,
        }
    }

    /// Signs `message` with the key type's algorithm (ECDSA with SHA-256 or SHA-384 and a
    /// DER signature, Ed25519, RSA PKCS#1 v1.5 with SHA-256): for statements a CA makes
    /// that are not certificates, such as an assignment's attestation.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        rcgen::SigningKey::sign(&self.pair, message).map_err(|e| Error::Crypto {
            what: "signing",
            reason: e.to_string(),
        })
    }

    /// Whether this key is the private half of the certificate's public key.
    pub fn matches_certificate(&self, cert: &CertificateDer<'_>) -> Result<bool, Error> {
        let x509 = crate::certificate::parse_x509("certificate", cert)?;
        Ok(x509.public_key().subject_public_key.data.as_ref() == self.pair.der_bytes())
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("key_type", &self.key_type)
            .field("key", &"[elided]")
            .finish()
    }
}

impl PublicKeyData for PrivateKey {
    fn der_bytes(&self) -> &[u8] {
        self.pair.der_bytes()
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.pair.algorithm()
    }
}

impl rcgen::SigningKey for PrivateKey {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.pair.sign(msg)
    }
}

/// A public key of a supported type, as a DER SubjectPublicKeyInfo.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    spki: Vec<u8>,
    raw: Vec<u8>,
    key_type: KeyType,
}

impl PublicKey {
    /// Reads a DER SubjectPublicKeyInfo; refuses key types Evergreen does not issue for.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, Error> {
        let (rest, spki) = SubjectPublicKeyInfo::from_der(der).map_err(|e| Error::Der {
            what: "public key".into(),
            reason: e.to_string(),
        })?;
        if !rest.is_empty() {
            return Err(Error::Der {
                what: "public key".into(),
                reason: "trailing data after the SubjectPublicKeyInfo".into(),
            });
        }
        let key_type = key_type_of(&spki).map_err(Error::UnsupportedKey)?;
        Ok(PublicKey {
            spki: der[..der.len() - rest.len()].to_vec(),
            raw: spki.subject_public_key.data.to_vec(),
            key_type,
        })
    }

    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// The DER SubjectPublicKeyInfo.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki
    }

    /// Whether `signature` is this key's signature of `message` (see [`PrivateKey::sign`]).
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        use aws_lc_rs::signature as sig;
        let algorithm: &dyn sig::VerificationAlgorithm = match self.key_type {
            KeyType::EcP256 => &sig::ECDSA_P256_SHA256_ASN1,
            KeyType::EcP384 => &sig::ECDSA_P384_SHA384_ASN1,
            KeyType::Ed25519 => &sig::ED25519,
            KeyType::Rsa2048 | KeyType::Rsa3072 | KeyType::Rsa4096 => {
                &sig::RSA_PKCS1_2048_8192_SHA256
            }
        };
        sig::UnparsedPublicKey::new(algorithm, &self.raw)
            .verify(message, signature)
            .is_ok()
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("key_type", &self.key_type)
            .finish_non_exhaustive()
    }
}

impl PublicKeyData for PublicKey {
    fn der_bytes(&self) -> &[u8] {
        &self.raw
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.key_type.signature_algorithm()
    }

    // The SubjectPublicKeyInfo goes into the certificate exactly as it was received.
    fn subject_public_key_info(&self) -> Vec<u8> {
        self.spki.clone()
    }
}

/// The supported key type of a parsed SubjectPublicKeyInfo, or why it is not supported.
pub(crate) fn key_type_of(spki: &SubjectPublicKeyInfo<'_>) -> Result<KeyType, String> {
    use x509_parser::oid_registry::{
        OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
        OID_SIG_ED25519,
    };
    let alg = &spki.algorithm.algorithm;
    if *alg == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok());
        match curve {
            Some(c) if c == OID_EC_P256 => Ok(KeyType::EcP256),
            Some(c) if c == OID_NIST_EC_P384 => Ok(KeyType::EcP384),
            Some(c) => Err(format!("EC key on curve {c}")),
            None => Err("EC key without a named curve".into()),
        }
    } else if *alg == OID_SIG_ED25519 {
        Ok(KeyType::Ed25519)
    } else if *alg == OID_PKCS1_RSAENCRYPTION {
        match spki.parsed() {
            Ok(ParsedPublicKey::RSA(rsa)) => KeyType::from_rsa_bits(rsa.key_size()),
            _ => Err("RSA key that cannot be read".into()),
        }
    } else {
        Err(format!("key with algorithm {alg}"))
    }
}
