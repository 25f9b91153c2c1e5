//! What the agent trusts, and how that moves: only forward, through proof.
//!
//! The first root is the one the join token pins (checked against `/cacerts` before
//! anything is sent). After that a root joins only when a trust bundle proves it — a copy
//! of it cross-signed by a root already trusted — or when the operator gives the agent a
//! token that pins it. A root the bundle no longer lists is dropped, but never the last
//! one: a server that lists none of the trusted roots is refused, not followed.
//!
//! What the agent installs must come from what it trusts: a certificate whose chain
//! verifies to a trusted root, or one the cluster attests (signed by a CA that chains to a
//! trusted root), which may come from another CA — an administrator's certificate from the
//! company's CA, for example.
use std::path::{Path, PathBuf};

use anyhow::Result;
use evergreen_pki::certificate::{CertificateInfo, Usage};
use evergreen_pki::{CertificateDer, OffsetDateTime, PublicKey, chain, pem};

#[derive(Debug)]
pub struct Trust {
    roots: Vec<CertificateDer<'static>>,
    path: PathBuf,
}

impl Trust {
    /// The roots kept in `DIR/root.crt`; none before the first enrollment.
    pub fn load(data_dir: &Path) -> Self {
        let path = data_dir.join("root.crt");
        let roots = std::fs::read(&path)
            .ok()
            .and_then(|bytes| pem::parse_certificates("root.crt", &bytes).ok())
            .unwrap_or_default();
        Trust { roots, path }
    }

    pub fn roots(&self) -> &[CertificateDer<'static>] {
        &self.roots
    }

    pub fn trusts(&self, root: &CertificateDer<'_>) -> bool {
        self.roots.iter().any(|r| r.as_ref() == root.as_ref())
    }

    /// Adds a root the operator vouched for (the one a join token pins).
    pub fn add(&mut self, root: CertificateDer<'static>) -> Result<()> {
        if !self.trusts(&root) {
            let mut roots = self.roots.clone();
            roots.push(root);
            self.save(roots)?;
        }
        Ok(())
    }

    fn save(&mut self, roots: Vec<CertificateDer<'static>>) -> Result<()> {
        evergreen_api::files::replace(
            &self.path,
            pem::encode_certificates(&roots).as_bytes(),
            evergreen_api::files::PUBLIC_MODE,
        )?;
        self.roots = roots;
        Ok(())
    }

    /// A trust held in memory only (never saved): for judging answers without a data dir.
    pub fn in_memory(roots: Vec<CertificateDer<'static>>) -> Self {
        Trust {
            roots,
            path: PathBuf::new(),
        }
    }

    /// Follows a trust bundle from the server: keeps the trusted roots it lists, adds the
    /// roots it proves (cross-signed by a trusted one), and returns what it refused.
    pub fn follow(&mut self, bundle: &[CertificateDer<'static>]) -> Result<Vec<String>> {
        let (next, refused) = self.judge(bundle);
        if let Some(next) = next
            && next != self.roots
        {
            tracing::info!(
                roots = next.len(),
                "the cluster's roots changed; trusting the proven set"
            );
            self.save(next)?;
        }
        Ok(refused)
    }

    /// What following `bundle` would trust (`None`: keep the current roots, the bundle
    /// proves none) and what it refuses. Changes nothing.
    pub fn judge(
        &self,
        bundle: &[CertificateDer<'static>],
    ) -> (Option<Vec<CertificateDer<'static>>>, Vec<String>) {
        let listed: Vec<&CertificateDer<'static>> = bundle
            .iter()
            .filter(|c| CertificateInfo::from_der(c).is_ok_and(|i| i.self_signed && i.is_ca))
            .collect();
        let mut refused = Vec::new();
        let mut next: Vec<CertificateDer<'static>> = Vec::new();
        for root in &listed {
            if self.trusts(root) || chain::is_cross_signed(root, bundle, &self.roots) {
                if !next.contains(root) {
                    next.push((*root).clone());
                }
            } else {
                refused.push(format!(
                    "refused root {} (sha256:{}): no certificate in the trust bundle cross-signs it with a root this node trusts",
                    subject(root),
                    evergreen_pki::Fingerprint::of(root)
                ));
            }
        }
        if next.is_empty() {
            refused.push(
                "the server's trust bundle lists none of the roots this node trusts; keeping them"
                    .into(),
            );
            return (None, refused);
        }
        (Some(next), refused)
    }

    /// Whether `chain` (leaf first) verifies for `usage` at `now` to a trusted root.
    pub fn verifies(
        &self,
        chain: &[CertificateDer<'static>],
        usage: Usage,
        now: OffsetDateTime,
    ) -> Result<(), String> {
        let (leaf, intermediates) = chain
            .split_first()
            .ok_or_else(|| "the chain holds no certificate".to_owned())?;
        chain::verify(leaf, intermediates, &self.roots, usage, &[], now)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Whether `signature` over `message` is by the CA first in `signer` (its bundle),
    /// and that CA chains to a trusted root and is valid at `now`.
    pub fn attests(
        &self,
        signer: &[CertificateDer<'static>],
        message: &[u8],
        signature: &[u8],
        now: OffsetDateTime,
    ) -> Result<(), String> {
        let ca = signer
            .first()
            .ok_or_else(|| "no attesting CA was sent".to_owned())?;
        let info = CertificateInfo::from_der(ca).map_err(|e| e.to_string())?;
        if !info.is_ca || now < info.not_before || now > info.not_after {
            return Err(format!(
                "the attesting certificate {} is not a valid CA now",
                info.subject
            ));
        }
        if !self.trusts(ca) && !chain::chains_to(ca, signer, &self.roots) {
            return Err(format!(
                "the attesting CA {} does not chain to a root this node trusts",
                info.subject
            ));
        }
        let key = PublicKey::from_spki_der(&info.public_key).map_err(|e| e.to_string())?;
        if key.verify(message, signature) {
            Ok(())
        } else {
            Err(format!(
                "the attestation is not a signature of {}",
                info.subject
            ))
        }
    }
}

/// A certificate's subject, at most 200 characters: what a server sent is untrusted.
fn subject(cert: &CertificateDer<'_>) -> String {
    CertificateInfo::from_der(cert)
        .map(|i| i.subject.to_string().chars().take(200).collect())
        .unwrap_or_else(|_| "(unreadable)".into())
}
