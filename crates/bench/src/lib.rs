//! Evergreen's benchmarks. Each scenario starts what it measures (a real `evergreen server`
//! or `evergreen agent` process, and `cfssl serve` for the side-by-side run) on 127.0.0.1
//! in temporary directories, drives it, stops everything it started, and reports a
//! markdown table and, with `--json FILE`, a JSON document whose `results` entries carry
//! `system`, the parameters and the figures (units in their names).
//!
//! Timing is measured here and only reported: nothing in a test asserts a speed.
use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use serde_json::{Map, Value};

mod agent;
mod cfssl;
mod fleet;
mod inventory;
mod issue;
mod load;
mod process;

pub use load::Latencies;

#[derive(Debug, Parser)]
#[command(
    name = "evergreen-bench",
    about = "Measures Evergreen on this machine: issuance (side by side with cfssl), fleet propagation, inventory at scale, agent footprint.",
    after_help = "Examples:
  cargo run --release -p evergreen-bench -- issue --vs cfssl --json issue.json
  cargo run --release -p evergreen-bench -- issue --connections 64 --count 20000
  cargo run --release -p evergreen-bench -- fleet --agents 10000
  cargo run --release -p evergreen-bench -- inventory --certificates 1000000
  cargo run --release -p evergreen-bench -- agent --seconds 60
  cargo run --release -p evergreen-bench -- all --quick      # every scenario, tiny

Everything runs on 127.0.0.1 in temporary directories and is stopped at the end. The
`evergreen` binary is the one built next to this one (built on first use when run through
cargo), or --evergreen PATH. See BENCHMARKS.md for the figures and how to read them."
)]
pub struct Cli {
    #[command(subcommand)]
    pub scenario: Scenario,
    /// Write the results as JSON to FILE.
    #[arg(long, value_name = "FILE", global = true)]
    pub json: Option<PathBuf>,
    /// Tiny sizes and short waits: checks that a scenario still works, measures nothing.
    #[arg(long, global = true)]
    pub quick: bool,
    /// The `evergreen` binary to measure. Default: EVERGREEN_BIN, else the one next to
    /// this program.
    #[arg(long, value_name = "PATH", env = "EVERGREEN_BIN", global = true)]
    pub evergreen: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Scenario {
    /// Certificates per second, latency, server CPU per certificate and peak RSS for
    /// renewals (and enrollments) over C keep-alive mTLS connections.
    Issue(IssueArgs),
    /// Time from an update_cert call until N agents have acknowledged the new certificate.
    Fleet(FleetArgs),
    /// The "expiring within 30 days" listing and a /metrics scrape over a large inventory.
    Inventory(InventoryArgs),
    /// RSS and CPU of an idle `evergreen agent`.
    Agent(AgentArgs),
    /// Every scenario, in this order; takes each one's flags (tiny sizes with --quick).
    All(AllArgs),
}

#[derive(Debug, Clone, Args)]
pub struct AllArgs {
    #[command(flatten)]
    pub issue: IssueArgs,
    #[command(flatten)]
    pub fleet: FleetArgs,
    #[command(flatten)]
    pub inventory: InventoryArgs,
    #[command(flatten)]
    pub agent: AgentArgs,
}

#[derive(Debug, Clone, Args)]
pub struct IssueArgs {
    /// Keep-alive mTLS connections; repeat for several levels.
    #[arg(long = "connections", value_name = "N", default_values_t = [1, 8, 64])]
    pub connections: Vec<usize>,
    /// Certificates per system and concurrency level.
    #[arg(long, value_name = "N", default_value_t = 6000)]
    pub count: usize,
    /// Rounds per level; the systems alternate round by round so both see the same
    /// machine.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub rounds: usize,
    /// Drive the same CSRs through this peer too (needs `cfssl` on PATH, Debian package
    /// golang-cfssl).
    #[arg(long, value_name = "PEER", value_parser = ["cfssl"])]
    pub vs: Option<String>,
    /// Skip the enrollment rows (renewals only).
    #[arg(long)]
    pub no_enroll: bool,
}

impl IssueArgs {
    fn quick(&self) -> Self {
        IssueArgs {
            connections: vec![1, 4],
            count: 24,
            rounds: 2,
            ..self.clone()
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct FleetArgs {
    /// Simulated agents; repeat for several sizes.
    #[arg(long = "agents", value_name = "N", default_values_t = [1000, 10000])]
    pub agents: Vec<usize>,
    /// Certificate updates per size.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub updates: usize,
}

#[derive(Debug, Clone, Args)]
pub struct InventoryArgs {
    /// Certificates in the datastore.
    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    pub certificates: usize,
    /// Times each query is repeated.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub repeat: usize,
}

#[derive(Debug, Clone, Args)]
pub struct AgentArgs {
    /// How long to watch the idle agent.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub seconds: u64,
}

/// What one run of a scenario found.
#[derive(Debug, Default)]
pub struct Report {
    pub scenario: String,
    pub results: Vec<Map<String, Value>>,
    /// Checks made along the way (inventory complete, chains verified, …).
    pub checks: Vec<String>,
}

impl Report {
    fn new(scenario: &str) -> Self {
        Report {
            scenario: scenario.into(),
            ..Report::default()
        }
    }

    fn push(&mut self, result: Value) {
        if let Value::Object(map) = result {
            self.results.push(map);
        }
    }

    fn check(&mut self, what: impl Into<String>) {
        let what = what.into();
        eprintln!("  ok: {what}");
        self.checks.push(what);
    }

    /// A markdown table: one row per result, one column per key (in order of first use).
    pub fn markdown(&self) -> String {
        // Parameters first, then the headline figures, then the rest.
        const FIRST: [&str; 16] = [
            "system",
            "endpoint",
            "connections",
            "agents",
            "certificates",
            "updates",
            "certs",
            "certs_per_sec",
            "server_cpu_s_per_1k",
            "cpu_advantage_x",
            "rate_x",
            "all_acked_ms",
            "p50_ms",
            "p99_ms",
            "max_ms",
            "peak_rss_mb",
        ];
        let mut columns: Vec<&str> = FIRST
            .into_iter()
            .filter(|c| self.results.iter().any(|r| r.contains_key(*c)))
            .collect();
        for result in &self.results {
            for key in result.keys() {
                if !columns.contains(&key.as_str()) {
                    columns.push(key);
                }
            }
        }
        let mut out = format!("### {}\n\n", self.scenario);
        out.push_str(&format!("| {} |\n", columns.join(" | ")));
        out.push_str(&format!("|{}\n", "---|".repeat(columns.len())));
        for result in &self.results {
            let cells: Vec<String> = columns
                .iter()
                .map(|c| result.get(*c).map(cell).unwrap_or_default())
                .collect();
            out.push_str(&format!("| {} |\n", cells.join(" | ")));
        }
        out
    }
}

fn cell(value: &Value) -> String {
    match value {
        Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or_default();
            if f.abs() >= 100.0 {
                format!("{f:.0}")
            } else if f.abs() >= 1.0 {
                format!("{f:.2}")
            } else {
                format!("{f:.3}")
            }
        }
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Rounds to 3 decimals for the report.
fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The machine the figures come from.
fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_owned())
        .unwrap_or_default();
    let memory_gib = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map(|kib| round3(kib / 1024.0 / 1024.0))
        .unwrap_or_default();
    serde_json::json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "cpu_model": model,
        "memory_gib": memory_gib,
        "os": std::env::consts::OS,
    })
}

/// Parses `args` (program name first), runs the scenario, prints the table and writes the
/// JSON.
pub fn main<I, T>(args: I) -> Result<()>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = Cli::parse_from(args);
    let reports = run(&cli)?;
    for report in &reports {
        println!("{}", report.markdown());
    }
    if let Some(path) = &cli.json {
        let document = serde_json::json!({
            "machine": machine(),
            "quick": cli.quick,
            "scenarios": reports.iter().map(|r| r.scenario.clone()).collect::<Vec<_>>(),
            "results": reports
                .iter()
                .flat_map(|r| r.results.iter().map(|m| {
                    let mut m = m.clone();
                    m.insert("scenario".into(), Value::from(r.scenario.clone()));
                    Value::Object(m)
                }))
                .collect::<Vec<_>>(),
            "checks": reports.iter().flat_map(|r| r.checks.clone()).collect::<Vec<_>>(),
        });
        let text = serde_json::to_vec_pretty(&document)?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("results written to {}", path.display());
    }
    Ok(())
}

/// Runs what `cli` asks for and returns one report per scenario.
pub fn run(cli: &Cli) -> Result<Vec<Report>> {
    let evergreen = process::find_evergreen(cli.evergreen.as_deref())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let quick = cli.quick;
    runtime.block_on(async {
        let mut reports = Vec::new();
        let (issue, fleet, inventory, agent) = match &cli.scenario {
            Scenario::Issue(a) => (Some(a.clone()), None, None, None),
            Scenario::Fleet(a) => (None, Some(a.clone()), None, None),
            Scenario::Inventory(a) => (None, None, Some(a.clone()), None),
            Scenario::Agent(a) => (None, None, None, Some(a.clone())),
            Scenario::All(all) => {
                // Side by side with cfssl whenever it is installed.
                let mut issue = all.issue.clone();
                if issue.vs.is_none() && process::on_path("cfssl") {
                    issue.vs = Some("cfssl".into());
                }
                (
                    Some(issue),
                    Some(all.fleet.clone()),
                    Some(all.inventory.clone()),
                    Some(all.agent.clone()),
                )
            }
        };
        if let Some(args) = issue {
            let args = if quick { args.quick() } else { args };
            reports.push(issue::run(&evergreen, &args).await?);
        }
        if let Some(mut args) = fleet {
            if quick {
                args.agents = vec![12];
                args.updates = 2;
            }
            reports.push(fleet::run(&evergreen, &args).await?);
        }
        if let Some(mut args) = inventory {
            if quick {
                args.certificates = 3000;
                args.repeat = 2;
            }
            reports.push(inventory::run(&evergreen, &args).await?);
        }
        if let Some(mut args) = agent {
            if quick {
                args.seconds = 2;
            }
            reports.push(agent::run(&evergreen, &args).await?);
        }
        Ok(reports)
    })
}
