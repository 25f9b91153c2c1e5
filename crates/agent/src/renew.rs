//! Renewal, shared by the agent and `evergreen renew`: one schedule, one backoff, one hook
//! runner, and waits that follow the clock.
//!
//! [`ClientCertificate`] is a certificate and key in two files, renewed over mTLS with the
//! certificate itself as the proof (the Kyma procedure): once, or for ever as a daemon that
//! waits for the renewal window, retries with backoff while the server is away, and runs a
//! hook after each renewal.
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use anyhow::{Context, Result, bail};
use evergreen_api::client::Client;
use evergreen_api::files::{self, KEY_MODE, PUBLIC_MODE};
use evergreen_api::{CertificateBundle, Clock, RenewalRequest, decode_pem, encode_pem};
use evergreen_pki::certificate::CertificateInfo;
use evergreen_pki::renewal::{FixedJitter, Jitter, RandomJitter, RenewalPolicy};
use evergreen_pki::{CertificateDer, OffsetDateTime, PrivateKey, pem};
use tokio::sync::watch;

/// When a certificate with this validity is renewed: when the renewal window opens (90 days
/// before expiry, or with a third of the lifetime left for shorter certificates), moved
/// earlier by `jitter` (in `[0, 1)`) of a tenth of the window, so a fleet issued together does
/// not renew together. Draw the jitter once per certificate.
pub fn renew_at(info: &CertificateInfo, jitter: f64) -> OffsetDateTime {
    RenewalPolicy::default().renew_at_with_jitter(
        info.not_before,
        info.not_after,
        &mut FixedJitter(jitter),
    )
}

/// A fresh jitter draw for [`renew_at`].
pub fn draw_jitter() -> f64 {
    RandomJitter.fraction()
}

/// Exponential backoff between retries: each wait doubles, up to `max`, plus up to 30% at
/// random so that clients refused together do not return together.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: StdDuration,
    max: StdDuration,
    step: StdDuration,
}

impl Backoff {
    pub fn new(min: StdDuration, max: StdDuration) -> Self {
        let min = min.min(max);
        Backoff {
            min,
            max,
            step: min,
        }
    }

    /// Back to the shortest wait, after a success.
    pub fn reset(&mut self) {
        self.step = self.min;
    }

    /// The wait before the next retry.
    pub fn next_delay(&mut self) -> StdDuration {
        let delay = self
            .step
            .mul_f64(1.0 + RandomJitter.fraction() * 0.3)
            .min(self.max);
        self.step = (self.step * 2).min(self.max);
        delay
    }
}

/// Runs `command` with `sh -c` and waits for it; an error says how it failed.
pub async fn run_hook(command: &str) -> Result<()> {
    let status = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .status()
        .await
        .with_context(|| format!("{command:?} did not run"))?;
    if !status.success() {
        bail!("{command:?} failed with {status}");
    }
    Ok(())
}

/// Waits until `clock` reads `at`; `false` when `stop` turned true first. The clock is read
/// again at least every `tick`, so a host that was suspended (or a test's manual clock) is
/// followed rather than a sleep computed once.
pub async fn wait_until(
    clock: &dyn Clock,
    at: OffsetDateTime,
    tick: StdDuration,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    loop {
        if *stop.borrow() {
            return false;
        }
        let left = at - clock.now();
        if left <= evergreen_pki::Duration::ZERO {
            return true;
        }
        let nap = StdDuration::try_from(left).unwrap_or(tick).min(tick);
        if !pause(nap, stop).await {
            return false;
        }
    }
}

/// Waits `delay`; `false` when `stop` turned true first.
pub async fn pause(delay: StdDuration, stop: &mut watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return false;
    }
    tokio::select! {
        _ = tokio::time::sleep(delay) => true,
        _ = stop.changed() => false,
    }
}

/// A certificate and its key in two files, renewed with the certificate as the proof.
#[derive(Clone)]
pub struct ClientCertificate {
    pub server: String,
    /// The CA bundle that verifies the server; read again for each renewal.
    pub ca: PathBuf,
    /// The certificate (with its chain); replaced by each renewal.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Make a new key of the same type at each renewal instead of keeping the key.
    pub rotate_key: bool,
    /// Run after each renewal (for example a reload).
    pub exec: Option<String>,
    pub clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCertificate")
            .field("server", &self.server)
            .field("cert", &self.cert)
            .finish_non_exhaustive()
    }
}

/// How a [`ClientCertificate`] daemon paces itself.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// How often the clock is read while waiting for the renewal window.
    pub tick: StdDuration,
    /// The first and the longest wait between retries.
    pub min_backoff: StdDuration,
    pub max_backoff: StdDuration,
}

impl Default for Pace {
    fn default() -> Self {
        Pace {
            tick: StdDuration::from_secs(60),
            min_backoff: StdDuration::from_secs(30),
            max_backoff: StdDuration::from_secs(3600),
        }
    }
}

impl ClientCertificate {
    /// Where a rotated key waits until the certificate for it is written: a renewal that
    /// stops between the two files is finished by the next start (see [`Self::current`]).
    fn pending_key(&self) -> PathBuf {
        let mut name = self.key.file_name().unwrap_or_default().to_owned();
        name.push(".pending");
        self.key.with_file_name(name)
    }

    fn read_chain(&self) -> Result<Vec<CertificateDer<'static>>> {
        Ok(pem::parse_certificates(
            &self.cert.display().to_string(),
            &files::read_input(&self.cert)?,
        )?)
    }

    fn read_key(path: &Path) -> Result<PrivateKey> {
        Ok(PrivateKey::from_pem(
            &path.display().to_string(),
            &files::read_input(path)?,
        )?)
    }

    /// The certificate and key now, checked to match. A certificate that matches the
    /// pending key of an interrupted rotation makes that key current first.
    pub fn current(&self) -> Result<(CertificateInfo, PrivateKey)> {
        let chain = self.read_chain()?;
        let info = CertificateInfo::from_der(&chain[0])?;
        let key = Self::read_key(&self.key)?;
        if key.matches_certificate(&chain[0])? {
            return Ok((info, key));
        }
        let pending = self.pending_key();
        if let Ok(next) = Self::read_key(&pending)
            && next.matches_certificate(&chain[0])?
        {
            files::rename(&pending, &self.key)?;
            return Ok((info, next));
        }
        bail!(
            "{} does not match the certificate in {}",
            self.key.display(),
            self.cert.display()
        )
    }

    /// Renews once: the new certificate (and, with `rotate_key`, the new key) is written, and
    /// the new certificate returned. The hook is not run (see [`Self::run_hook`]).
    pub async fn renew_once(&self) -> Result<CertificateInfo> {
        let (info, current_key) = self.current()?;
        let ca = pem::parse_certificates(
            &self.ca.display().to_string(),
            &files::read_input(&self.ca)?,
        )?;
        let chain = self.read_chain()?;
        let client = Client::with_clock(
            &self.server,
            &ca,
            Some((chain, current_key.der().clone_key())),
            self.clock.clone(),
        )?;
        let key = if self.rotate_key {
            // Kept before it is sent, mode 0600, until the certificate for it is written.
            let key = PrivateKey::generate(current_key.key_type())?;
            files::replace(&self.pending_key(), key.to_pem().as_bytes(), KEY_MODE)?;
            key
        } else {
            current_key
        };
        let csr = evergreen_pki::csr::build(&key, &info.subject, &info.subject_alt_names)?;
        let request = RenewalRequest {
            csr: encode_pem(&pem::encode("CERTIFICATE REQUEST", &csr)),
        };
        let bundle: CertificateBundle = client
            .json(
                "POST",
                "/v1/applications/certificates/renewals",
                Some(&request),
            )
            .await
            .context("renewal refused")?;
        let crt =
            decode_pem(&bundle.crt).map_err(|e| anyhow::anyhow!("the server's crt is {e}"))?;
        let new_chain = pem::parse_certificates("the server's crt", &crt)?;
        if !key.matches_certificate(&new_chain[0])? {
            bail!("the server returned a certificate for another key; nothing was written");
        }
        let new = CertificateInfo::from_der(&new_chain[0])?;
        files::replace(&self.cert, &crt, PUBLIC_MODE)?;
        if self.rotate_key {
            files::rename(&self.pending_key(), &self.key)?;
        }
        Ok(new)
    }

    /// Runs the hook, if there is one.
    pub async fn run_hook(&self) -> Result<()> {
        match &self.exec {
            Some(command) => run_hook(command).await,
            None => Ok(()),
        }
    }

    /// Renews for ever: waits for the renewal window, renews, runs the hook; retries with
    /// backoff while the server cannot be reached or refuses, keeping the files as they
    /// are. Returns when `stop` turns true, or with an error when the files themselves
    /// cannot be read.
    pub async fn run(&self, pace: Pace, mut stop: watch::Receiver<bool>) -> Result<()> {
        let mut backoff = Backoff::new(pace.min_backoff, pace.max_backoff);
        let mut jitter = draw_jitter();
        let mut last_error = String::new();
        loop {
            let (info, _) = self.current()?;
            let at = renew_at(&info, jitter);
            if at > self.clock.now() && last_error.is_empty() {
                tracing::info!(
                    cert = %self.cert.display(),
                    serial = %info.serial_hex(),
                    "next renewal at {at}"
                );
            }
            if !wait_until(self.clock.as_ref(), at, pace.tick, &mut stop).await {
                return Ok(());
            }
            match self.renew_once().await {
                Ok(new) => {
                    tracing::info!(
                        cert = %self.cert.display(),
                        serial = %new.serial_hex(),
                        "renewed {}, valid until {}",
                        new.subject,
                        new.not_after
                    );
                    last_error.clear();
                    jitter = draw_jitter();
                    if let Err(e) = self.run_hook().await {
                        tracing::warn!("the renewal hook failed: {e:#}");
                    }
                    if renew_at(&new, jitter) > self.clock.now() {
                        backoff.reset();
                        continue;
                    }
                    // Due the moment it arrives: the clocks disagree, or the server issues
                    // shorter certificates than the window; renewing again at once would
                    // only repeat that.
                    tracing::warn!(
                        "the new certificate is already inside its renewal window (is this host's clock or the server's wrong?)"
                    );
                }
                Err(error) => {
                    let mut message = format!("{error:#}");
                    if info.not_after < self.clock.now() {
                        message.push_str(&format!(
                            " (the certificate expired at {}: it cannot renew itself; get a new one with a join token)",
                            info.not_after
                        ));
                    }
                    if message != last_error {
                        tracing::warn!("{message}; keeping the files and retrying");
                        last_error = message;
                    }
                }
            }
            if !pause(backoff.next_delay(), &mut stop).await {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_bound_and_resets() {
        let mut b = Backoff::new(StdDuration::from_secs(1), StdDuration::from_secs(5));
        let waits: Vec<_> = (0..5).map(|_| b.next_delay()).collect();
        assert!(
            waits[0] >= StdDuration::from_secs(1) && waits[0] <= StdDuration::from_millis(1300)
        );
        assert!(waits[1] >= StdDuration::from_secs(2));
        assert!(waits.iter().all(|w| *w <= StdDuration::from_secs(5)));
        assert_eq!(waits[4], StdDuration::from_secs(5));
        b.reset();
        assert!(b.next_delay() < StdDuration::from_secs(2));
    }
}
