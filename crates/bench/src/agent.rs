//! `agent`: a real `evergreen agent` process, enrolled and idle (holding its watch), its
//! memory and CPU sampled every second.
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Result, bail};
use evergreen_api::Role;
use serde_json::json;

use crate::load::{self, now};
use crate::process::{Guarded, Server};
use crate::{AgentArgs, Report, round3};

pub async fn run(evergreen: &Path, args: &AgentArgs) -> Result<Report> {
    let mut report = Report::new("agent");
    let dir = tempfile::tempdir()?;
    let server = Server::start(evergreen, &dir.path().join("evergreen")).await?;
    let token = load::token(&server.admin()?, Role::Node, "bench-node", 1).await?;
    let agent_dir = dir.path().join("agent");
    let mut command = Command::new(evergreen);
    command
        .arg("agent")
        .args(["--server", &server.url, "--node", "bench-node"])
        .arg("--data-dir")
        .arg(&agent_dir)
        .env("EVERGREEN_TOKEN", &token)
        .env("EVERGREEN_LOG", "warn");
    let mut agent = Guarded::spawn("evergreen agent", command, dir.path().join("agent.log"))?;
    // Enrolled once its identity is installed; idle once it holds its watch.
    let started = now();
    while !agent_dir.join("identity").join("tls.crt").exists() {
        agent.still_running()?;
        if started.elapsed() > Duration::from_secs(60) {
            bail!(
                "the agent did not enroll within 60 s:\n{}",
                agent.log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    load::until_watching(&server.admin()?, 1).await?;

    let proc = agent.proc();
    let cpu_before = proc.cpu_seconds()?;
    let watching = now();
    let mut rss = Vec::new();
    while watching.elapsed() < Duration::from_secs(args.seconds) {
        tokio::time::sleep(Duration::from_secs(1).min(Duration::from_secs(args.seconds))).await;
        agent.still_running()?;
        rss.push(proc.rss_mb()?);
    }
    let seconds = watching.elapsed().as_secs_f64();
    let cpu_s = proc.cpu_seconds()? - cpu_before;
    let peak = proc.peak_rss_mb()?;
    let mean = rss.iter().sum::<f64>() / rss.len().max(1) as f64;
    report.push(json!({
        "system": "evergreen",
        "seconds": round3(seconds),
        "rss_mb": round3(mean),
        "peak_rss_mb": round3(peak),
        "cpu_s": round3(cpu_s),
        "cpu_percent": round3(cpu_s / seconds * 100.0),
    }));
    report.check(format!(
        "the agent enrolled and stayed up for {seconds:.0} s"
    ));
    agent.stop().await?;
    server.stop().await?;
    Ok(report)
}
