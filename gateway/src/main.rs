//! `portcullis-gateway`: run the gateway, or check a configuration file.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use portcullis_gateway::GatewayState;
use portcullis_gateway::config::Config;

/// The Portcullis gateway: a reverse proxy in front of MCP servers that verifies each agent's
/// delegation token, filters tools/list, authorizes every tools/call before it reaches the
/// upstream, and never forwards the agent's own token.
#[derive(Debug, Parser)]
#[command(name = "portcullis-gateway", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway. SIGTERM lets requests in flight finish (for at most
    /// grace_period_seconds) and exits once none is left; SIGINT stops at once.
    Run {
        /// The YAML configuration file.
        #[arg(short, long, env = "PORTCULLIS_GATEWAY_CONFIG")]
        config: PathBuf,
    },
    /// Validate a configuration file and print what it resolves to; exits non-zero on error.
    Check {
        /// The YAML configuration file.
        #[arg(short, long)]
        config: PathBuf,
    },
    /// List pinned tools and changed definitions waiting for approval.
    PinsList {
        /// The YAML configuration file (for `pins_file`).
        #[arg(short, long, env = "PORTCULLIS_GATEWAY_CONFIG")]
        config: PathBuf,
    },
    /// Approve a changed tool definition (after reading it with pins-list); running gateways
    /// pick the approval up within a second.
    PinsApprove {
        /// The YAML configuration file (for `pins_file`).
        #[arg(short, long, env = "PORTCULLIS_GATEWAY_CONFIG")]
        config: PathBuf,
        /// The upstream.
        #[arg(long)]
        upstream: String,
        /// The tool; every pending tool of the upstream with --all.
        #[arg(long, required_unless_present = "all")]
        tool: Option<String>,
        /// Approve every pending tool of the upstream.
        #[arg(long, conflicts_with = "tool")]
        all: bool,
    },
    /// Check the hash chain of a decision log (`audit.dir`/decisions.jsonl); names the first
    /// modified, deleted or reordered line.
    AuditVerify {
        /// The log file.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    // Traces go to an OTLP receiver when the OTEL_EXPORTER_OTLP_* variables name one.
    let (traces, _exporting) = match portcullis_gateway::telemetry::layer() {
        Ok(Some((layer, exporting))) => (Some(layer), Some(exporting)),
        Ok(None) => (None, None),
        Err(e) => {
            eprintln!("traces: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,pingora_core=warn,pingora_proxy=warn".into()),
        )
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(traces)
        .init();
    let cli = Cli::parse();
    let path = &match &cli.command {
        Command::Run { config }
        | Command::Check { config }
        | Command::PinsList { config }
        | Command::PinsApprove { config, .. } => config.clone(),
        Command::AuditVerify { file } => {
            return match portcullis_gateway::decision_log::verify(file) {
                Ok(count) => {
                    println!("{}: {count} decisions, chain intact", file.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{}: {e}", file.display());
                    ExitCode::FAILURE
                }
            };
        }
    };
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    };
    let pins_file = || {
        config.settings.pins_file.clone().ok_or_else(|| {
            eprintln!(
                "{}: pins_file is not set: tool pinning is off",
                path.display()
            );
            ExitCode::FAILURE
        })
    };
    match cli.command {
        Command::AuditVerify { .. } => unreachable!("answered above"),
        Command::PinsList { .. } => {
            let file = match pins_file() {
                Ok(file) => file,
                Err(code) => return code,
            };
            match portcullis_gateway::pins::update(&file, |_| Ok(())) {
                Ok(((), pins)) => {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&pins).expect("pins serialise")
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::PinsApprove { upstream, tool, .. } => {
            let file = match pins_file() {
                Ok(file) => file,
                Err(code) => return code,
            };
            let now = portcullis_gateway::clock::now();
            match portcullis_gateway::pins::approve(&file, &upstream, tool.as_deref(), now) {
                Ok(approved) => {
                    for tool in approved {
                        println!("approved {upstream}/{tool}");
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Check { .. } => {
            println!("{}: ok", path.display());
            for up in &config.routes.upstreams {
                println!(
                    "  /mcp/{} -> {} (resource {}, downstream auth {:?})",
                    up.name, up.addr, up.resource, up.auth
                );
            }
            for fleet in &config.routes.fleets {
                let members: Vec<&str> = fleet.members.iter().map(|m| m.name.as_str()).collect();
                println!(
                    "  /mcp/{} -> fleet of {} (resource {}, tools named member__tool)",
                    fleet.name,
                    members.join(", "),
                    fleet.resource
                );
            }
            ExitCode::SUCCESS
        }
        Command::Run { .. } => match GatewayState::prepare(config) {
            Ok(state) => {
                let signals = portcullis_gateway::signals(&state);
                portcullis_gateway::run(state, signals);
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("portcullis-gateway: {e}");
                ExitCode::FAILURE
            }
        },
    }
}
