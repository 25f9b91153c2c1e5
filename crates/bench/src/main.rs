//! `evergreen-bench`: see `evergreen-bench --help` and BENCHMARKS.md.
fn main() -> std::process::ExitCode {
    match evergreen_bench::main(std::env::args_os()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("evergreen-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
