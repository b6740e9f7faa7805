//! `portcullis-loadtest`: placeholder for the MCP-aware load generator (see README.md).

fn main() {
    eprintln!(
        "portcullis-loadtest is not implemented yet; see loadtest/README.md and docs/BENCHMARKS.md"
    );
    std::process::exit(2);
}
