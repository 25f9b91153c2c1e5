//! The processes a scenario measures: finding the `evergreen` binary, starting and
//! stopping a server, and reading a process's CPU time and memory from /proc.
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use evergreen_api::client::Client;
use evergreen_pki::{PrivateKey, pem};
use rustls_pki_types::CertificateDer;

use crate::load::now;

/// Whether `program` is on PATH.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// The `evergreen` binary: `explicit`, else the one next to this program. Run through
/// `cargo run`, a missing one is built first with the same profile.
pub fn find_evergreen(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(path) = explicit {
        if !path.is_file() {
            bail!("--evergreen {}: no such file", path.display());
        }
        return Ok(path.to_owned());
    }
    let me = std::env::current_exe().context("finding this program's path")?;
    let dir = me
        .parent()
        .context("this program's path has no directory")?;
    let sibling = dir.join("evergreen");
    if sibling.is_file() {
        return Ok(sibling);
    }
    let Some(cargo) = std::env::var_os("CARGO") else {
        bail!(
            "no evergreen binary at {}; build it (cargo build --release -p evergreen-cli) or pass --evergreen PATH",
            sibling.display()
        );
    };
    let release = dir.file_name().is_some_and(|n| n == "release");
    eprintln!(
        "building evergreen: cargo build --locked -p evergreen-cli{}",
        if release { " --release" } else { "" }
    );
    let mut build = Command::new(cargo);
    build.args(["build", "--locked", "-p", "evergreen-cli"]);
    if release {
        build.arg("--release");
    }
    let status = build.status().context("running cargo build")?;
    if !status.success() || !sibling.is_file() {
        bail!("building evergreen failed ({status})");
    }
    Ok(sibling)
}

/// Reads a running process's CPU time and memory.
#[derive(Debug, Clone, Copy)]
pub struct Proc(pub u32);

impl Proc {
    /// User plus system CPU seconds so far.
    pub fn cpu_seconds(self) -> Result<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.0))
            .with_context(|| format!("reading /proc/{}/stat", self.0))?;
        // The command name (field 2) may hold spaces; fields after its ')' are plain.
        let after = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest)
            .context("unreadable /proc stat")?;
        let fields: Vec<&str> = after.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the whole line, 12 and 13 here.
        let ticks: f64 = fields
            .get(11..13)
            .context("short /proc stat")?
            .iter()
            .map(|f| f.parse::<f64>().unwrap_or_default())
            .sum();
        Ok(ticks / clock_ticks())
    }

    fn status_kib(self, field: &str) -> Result<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.0))
            .with_context(|| format!("reading /proc/{}/status", self.0))?;
        status
            .lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .with_context(|| format!("no {field} in /proc/{}/status", self.0))
    }

    /// Resident memory now, MB (10^6 bytes).
    pub fn rss_mb(self) -> Result<f64> {
        Ok(self.status_kib("VmRSS:")? * 1024.0 / 1e6)
    }

    /// The most resident memory so far, MB.
    pub fn peak_rss_mb(self) -> Result<f64> {
        Ok(self.status_kib("VmHWM:")? * 1024.0 / 1e6)
    }
}

/// Kernel clock ticks per second (`getconf CLK_TCK`; 100 on Linux everywhere in practice).
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// A child process that is killed if the scenario ends early (error or panic).
#[derive(Debug)]
pub struct Guarded {
    pub child: Child,
    pub name: &'static str,
    pub log: PathBuf,
}

impl Guarded {
    /// Starts `command` with its output in `log`.
    pub fn spawn(name: &'static str, mut command: Command, log: PathBuf) -> Result<Self> {
        let out =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        Ok(Guarded { child, name, log })
    }

    pub fn proc(&self) -> Proc {
        Proc(self.child.id())
    }

    /// The last lines of its output, for an error message.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Fails, with its output, if it has exited.
    pub fn still_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{} exited ({status}):\n{}", self.name, self.log_tail());
        }
        Ok(())
    }

    /// SIGTERM, then SIGKILL after 20 s.
    pub async fn stop(mut self) -> Result<()> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let started = now();
        while started.elapsed() < Duration::from_secs(20) {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        bail!("{} did not stop within 20 s of SIGTERM", self.name)
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A real `evergreen server` on 127.0.0.1 with its own data dir.
#[derive(Debug)]
pub struct Server {
    pub process: Guarded,
    pub data_dir: PathBuf,
    pub url: String,
    pub roots: Vec<CertificateDer<'static>>,
}

impl Server {
    /// Starts `evergreen server` on `data_dir` (made if missing) and waits until it
    /// listens.
    pub async fn start(evergreen: &Path, data_dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(data_dir)?;
        let url_file = data_dir.join("server-url");
        let _ = std::fs::remove_file(&url_file);
        let mut command = Command::new(evergreen);
        command
            .arg("server")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", "127.0.0.1:0"])
            // Every simulated agent connects from 127.0.0.1, where a real fleet comes from
            // as many addresses as it has nodes: the per-source cap on unproven
            // connections (a flood defence) would shed the fleet's reconnect storm.
            .args(["--max-unproven-per-source", "1000000"])
            .env("EVERGREEN_LOG", "warn");
        let mut process = Guarded::spawn("evergreen server", command, data_dir.join("server.log"))?;
        let started = now();
        while !url_file.exists() {
            process.still_running()?;
            if started.elapsed() > Duration::from_secs(120) {
                bail!("evergreen server did not listen within 120 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let url = std::fs::read_to_string(&url_file)?.trim().to_owned();
        let roots = pem::parse_certificates("ca.crt", &std::fs::read(data_dir.join("ca.crt"))?)?;
        Ok(Server {
            process,
            data_dir: data_dir.to_owned(),
            url,
            roots,
        })
    }

    pub fn proc(&self) -> Proc {
        self.process.proc()
    }

    /// A client that trusts the cluster's CAs and presents no certificate.
    pub fn anonymous(&self) -> Result<Client> {
        Ok(Client::new(&self.url, &self.roots, None)?)
    }

    /// A client with the admin credential from the data dir.
    pub fn admin(&self) -> Result<Client> {
        let chain = pem::parse_certificates(
            "admin.crt",
            &std::fs::read(self.data_dir.join("admin.crt"))?,
        )?;
        let key = PrivateKey::from_pem(
            "admin.key",
            &std::fs::read(self.data_dir.join("admin.key"))?,
        )?;
        Ok(Client::new(
            &self.url,
            &self.roots,
            Some((chain, key.der().clone_key())),
        )?)
    }

    pub async fn stop(self) -> Result<()> {
        self.process.stop().await
    }
}
