//! Every benchmark scenario once, tiny (`--quick`), against this build's `evergreen`: the
//! benchmarks cannot rot. Figures are checked for presence and sense, never for speed.
use serde_json::Value;

fn has_cfssl() -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join("cfssl").is_file()))
}

fn figure(result: &Value, name: &str) -> f64 {
    result[name]
        .as_f64()
        .unwrap_or_else(|| panic!("{name} missing in {result}"))
}

#[test]
fn every_scenario_runs_in_quick_mode_and_reports_its_figures() {
    assert!(
        has_cfssl(),
        "the issue scenario is compared with cfssl: install it (Debian: apt-get install golang-cfssl; scripts/test does)"
    );
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    evergreen_bench::main([
        "evergreen-bench",
        "all",
        "--quick",
        "--evergreen",
        env!("CARGO_BIN_EXE_evergreen"),
        "--json",
        json.to_str().unwrap(),
    ])
    .unwrap();
    let document: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let results = document["results"].as_array().unwrap();
    let of = |scenario: &str| -> Vec<&Value> {
        results
            .iter()
            .filter(|r| r["scenario"] == scenario)
            .collect()
    };

    // issue: each level has Evergreen's renewals and enrollments and cfssl's signatures.
    let issue = of("issue");
    for connections in [1, 4] {
        for (system, endpoint) in [
            ("evergreen", "renewal"),
            ("evergreen", "enroll"),
            ("cfssl", "sign"),
        ] {
            let row = issue
                .iter()
                .find(|r| {
                    r["system"] == system
                        && r["endpoint"] == endpoint
                        && r["connections"] == connections
                })
                .unwrap_or_else(|| panic!("no {system} {endpoint} row at {connections}"));
            assert_eq!(row["certs"], 24, "{row}");
            for name in ["certs_per_sec", "p50_ms", "peak_rss_mb"] {
                assert!(figure(row, name) > 0.0, "{name} in {row}");
            }
            // CPU time is counted in 10 ms ticks: 24 certificates may take none.
            assert!(figure(row, "server_cpu_s_per_1k") >= 0.0, "{row}");
            assert!(figure(row, "p50_ms") <= figure(row, "p99_ms"), "{row}");
            assert!(figure(row, "p99_ms") <= figure(row, "max_ms"), "{row}");
        }
        let ours = issue
            .iter()
            .find(|r| r["endpoint"] == "renewal" && r["connections"] == connections)
            .unwrap();
        assert!(figure(ours, "cpu_advantage_x") >= 0.0, "{ours}");
        assert!(figure(ours, "rate_x") > 0.0, "{ours}");
    }

    let fleet = of("fleet");
    assert_eq!(fleet.len(), 1);
    assert_eq!(fleet[0]["agents"], 12);
    assert!(figure(fleet[0], "all_acked_ms") > 0.0);
    assert!(figure(fleet[0], "server_rss_mb") > 0.0);

    let inventory = of("inventory");
    assert_eq!(inventory[0]["certificates"], 3000);
    // About 30 of 365 days' worth expire within 30 days.
    let expiring = figure(inventory[0], "expiring_30d");
    assert!((150.0..=350.0).contains(&expiring), "{}", inventory[0]);
    assert!(figure(inventory[0], "metrics_mb") > 0.0);

    let agent = of("agent");
    assert!(figure(agent[0], "rss_mb") > 0.0, "{}", agent[0]);
    assert!(figure(agent[0], "seconds") >= 2.0, "{}", agent[0]);

    // What the runs checked: inventory complete, every chain verified by webpki and openssl.
    let checks: Vec<&str> = document["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    for wanted in [
        "certificates Evergreen returned are in its inventory",
        "Evergreen's chains verified",
        "cfssl's certificates verified",
        "the server lists every node",
        "certificates expire within 30 days",
    ] {
        assert!(
            checks.iter().any(|c| c.contains(wanted)),
            "{wanted:?} not in {checks:?}"
        );
    }
    assert!(
        checks.iter().all(|c| !c.contains(" 0 by openssl")),
        "openssl checked nothing: {checks:?}"
    );
}

#[test]
fn more_agents_than_open_files_is_refused_before_anything_starts() {
    let error = evergreen_bench::run(&<evergreen_bench::Cli as clap::Parser>::parse_from([
        "evergreen-bench",
        "fleet",
        "--agents",
        "100000000",
        "--evergreen",
        env!("CARGO_BIN_EXE_evergreen"),
    ]))
    .unwrap_err();
    assert!(format!("{error:#}").contains("ulimit -n"), "{error:#}");
}
