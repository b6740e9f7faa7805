//! `portcullis-loadtest`: an MCP-aware load generator for Portcullis.
//!
//! It starts the whole stack in this process — the issuer (SQLite in a temporary directory),
//! the expenses MCP server and the gateway, all on 127.0.0.1 — registers an agent with a grant
//! (`expenses/*`, `/amount` at most 500, one re-delegation), and drives MCP traffic over plain
//! HTTP:
//!
//! - `calls` and `tools-list` ([`ab`]): latency and throughput straight to an MCP server and
//!   through the gateway, in interleaved rounds;
//! - `kill-switch` ([`kill_switch`]): how fast revoking a grant ends N live streaming calls;
//! - `memory` ([`memory`]): resident memory per idle session.
//!
//! Every run is bounded: requests have timeouts, loops end by the clock and by a count, and a
//! watchdog ends the whole run. Nothing is sent anywhere but 127.0.0.1.

mod ab;
mod approval;
mod console;
mod exchange;
mod kill_switch;
mod large_bodies;
mod mcp;
mod memory;
mod passthrough;
mod soak;
mod stats;
mod stdio;
mod timed_stream;
mod world;

use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use serde::Serialize;
use serde_json::json;

use crate::ab::{LoadArgs, Workload};
use crate::kill_switch::KillArgs;
use crate::mcp::Message;
use crate::memory::MemoryArgs;
use crate::world::World;

/// Starting the stack and setting up the agent; beyond this, something is stuck.
const SETUP_BOUND: Duration = Duration::from_secs(120);
/// Log filter unless RUST_LOG is set.
const DEFAULT_LOG: &str = "error,pingora_proxy=off";
/// File descriptors per live session in this one process: the client's socket, the gateway's
/// two, the expenses server's one.
const FDS_PER_SESSION: u64 = 4;
/// Descriptors for everything else (database, listeners, pools, the issuer).
const FDS_BASE: u64 = 512;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "MCP-aware load generator for Portcullis: starts issuer, expenses MCP server and \
             gateway in this process on 127.0.0.1 and measures them",
    after_help = "Progress goes to stderr; the report to stdout (with --json: JSON on stdout, \
                  the human report on stderr). RUST_LOG sets the stack's log filter (default: \
                  error,pingora_proxy=off). See loadtest/README.md for what each figure means."
)]
struct Cli {
    /// Print a machine-readable JSON summary on stdout (the human report goes to stderr).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// tools/call over raw HTTP, direct to the MCP server vs through the gateway (verify +
    /// authorize + downstream mint), in interleaved rounds.
    Calls(CallsArgs),
    /// tools/list (which the gateway filters), direct vs through the gateway, interleaved.
    ToolsList(ToolsListArgs),
    /// Opens N live SSE tool calls through the gateway, revokes their grant at the issuer, and
    /// times each stream's end.
    KillSwitch(KillArgs),
    /// Opens N idle SSE sessions through the gateway and reports resident memory per session
    /// (of the whole process: the stack and the load generator together).
    Memory(MemoryArgs),
    /// Holds N sessions through a gateway in a process of its own for minutes, with calls and
    /// tools/list going on, and samples the gateway's memory and descriptors.
    Soak(crate::soak::SoakArgs),
    /// Step-up approvals: a plain call, a call held for approval, and its retry once a person
    /// approved it (the approval spent at the issuer), round after round on one session.
    Approval(crate::approval::ApprovalArgs),
    /// RFC 8693 token exchanges per second at our issuer (SQLite, and PostgreSQL with
    /// --postgres-url) and at an authgent-server peer (--authgent-url), interleaved.
    Exchange(crate::exchange::ExchangeArgs),
    /// The operator console under decision traffic: ingest with and without consoles open,
    /// and the time from a gateway shipping a decision to a console receiving it.
    Console(crate::console::ConsoleArgs),
    /// Many large tools/call bodies at once through a gateway in a process of its own: its
    /// memory against the body buffer's bound.
    LargeBodies(crate::large_bodies::LargeBodiesArgs),
    /// A pooled stdio upstream against the same server (server-everything) over HTTP, both
    /// through the gateway, in alternating rounds.
    Stdio(crate::stdio::StdioArgs),
}

#[derive(Debug, clap::Args)]
struct CallsArgs {
    /// The tool to call: submit_expense {"amount": 120, "category": "travel"}, or
    /// list_expenses {}.
    #[arg(long, value_enum, default_value_t = Tool::SubmitExpense)]
    tool: Tool,
    #[command(flatten)]
    load: LoadArgs,
}

#[derive(Debug, clap::Args)]
struct ToolsListArgs {
    /// Generated tools the MCP servers list besides their own four (e.g. 1000), each with a
    /// description and a three-argument schema.
    #[arg(long, default_value_t = 0)]
    catalog: usize,
    #[command(flatten)]
    load: LoadArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Tool {
    #[value(name = "submit_expense")]
    SubmitExpense,
    #[value(name = "list_expenses")]
    ListExpenses,
}

impl Tool {
    fn workload(self) -> Workload {
        let (name, arguments) = match self {
            Tool::SubmitExpense => (
                "submit_expense",
                json!({"amount": 120, "category": "travel"}),
            ),
            Tool::ListExpenses => ("list_expenses", json!({})),
        };
        Workload {
            label: format!("tools/call {name} {arguments}"),
            message: Message::tool_call(name, &arguments),
        }
    }
}

impl Command {
    fn validate(&self) -> anyhow::Result<()> {
        match self {
            Command::Calls(args) => args.load.validate(),
            Command::ToolsList(args) => {
                anyhow::ensure!(args.catalog <= 100_000, "--catalog must be at most 100000");
                args.load.validate()
            }
            Command::KillSwitch(args) => args.validate(),
            Command::Memory(args) => args.validate(),
            Command::Soak(args) => args.validate(),
            Command::Exchange(args) => args.validate(),
            Command::Approval(args) => args.validate(),
            Command::Console(args) => args.validate(),
            Command::LargeBodies(args) => args.validate(),
            Command::Stdio(args) => args.validate(),
        }
    }

    /// The longest the run may take, setup included.
    fn time_bound(&self) -> Duration {
        SETUP_BOUND
            + match self {
                Command::Calls(args) => args.load.time_bound(),
                Command::ToolsList(args) => args.load.time_bound(),
                Command::KillSwitch(args) => args.time_bound(),
                Command::Memory(args) => args.time_bound(),
                Command::Soak(args) => args.time_bound(),
                Command::Exchange(args) => args.time_bound(),
                Command::Approval(args) => args.time_bound(),
                Command::Console(args) => args.time_bound(),
                Command::LargeBodies(args) => args.time_bound(),
                Command::Stdio(args) => args.time_bound(),
            }
    }

    /// Live sessions the run holds at once, for the open-file limit.
    fn sessions(&self) -> usize {
        match self {
            // Direct, passthrough and gateway lanes.
            Command::Calls(args) => 3 * args.load.clients(),
            Command::ToolsList(args) => 3 * args.load.clients(),
            Command::KillSwitch(args) => args.sessions,
            // A separate gateway holds its own two sockets per session; this process the
            // client's and the expenses server's.
            Command::Memory(args) if args.gateway_binary.is_some() => args.sessions / 2,
            Command::Memory(args) => args.sessions,
            Command::Soak(args) => args.sessions / 2,
            // Each agent holds a pooled connection or two per target.
            Command::Exchange(args) => args.clients(),
            Command::Approval(_) => 1,
            Command::Console(args) => args.sessions(),
            Command::LargeBodies(args) => args.sessions(),
            Command::Stdio(args) => args.clients(),
        }
    }
}

/// Raises the soft open-file limit (at most to the hard one) when the run needs more.
fn ensure_fd_limit(sessions: usize) -> anyhow::Result<()> {
    let needed = FDS_BASE + FDS_PER_SESSION * sessions as u64;
    let limit = rlimit::increase_nofile_limit(needed).context("raising the open-file limit")?;
    anyhow::ensure!(
        limit >= needed,
        "{sessions} sessions need about {needed} open files but the limit is {limit}: raise the \
         hard limit (ulimit -Hn) first"
    );
    Ok(())
}

/// The report as JSON, with the subcommand's name.
#[derive(Debug, Serialize)]
struct Tagged<'a, R> {
    command: &'a str,
    #[serde(flatten)]
    report: &'a R,
}

fn emit<R: Serialize>(json: bool, command: &str, text: &str, report: &R) -> anyhow::Result<()> {
    if json {
        eprint!("{text}");
        println!(
            "{}",
            serde_json::to_string_pretty(&Tagged { command, report })?
        );
    } else {
        print!("{text}");
    }
    Ok(())
}

async fn run(cli: &Cli) -> anyhow::Result<()> {
    let json = cli.json;
    match &cli.command {
        Command::Calls(args) => {
            let redis_url = args.load.redis_url();
            let world = World::start_with(args.load.needs_direct_server(), None, redis_url).await?;
            let report = ab::run(&world, args.tool.workload(), &args.load).await?;
            emit(json, "calls", &report.render(), &report)
        }
        Command::ToolsList(args) => {
            let world = World::start(args.load.needs_direct_server()).await?;
            world.set_catalog(args.catalog);
            let workload = Workload {
                label: match args.catalog {
                    0 => "tools/list".to_owned(),
                    n => format!("tools/list of {} tools", n + 4),
                },
                message: Message::new("tools/list", &json!({})),
            };
            let report = ab::run(&world, workload, &args.load).await?;
            emit(json, "tools-list", &report.render(), &report)
        }
        Command::KillSwitch(args) => {
            let world = World::start_with(false, args.gateway_binary.clone(), None).await?;
            let report = kill_switch::run(&world, args).await?;
            emit(json, "kill-switch", &report.render(), &report)
        }
        Command::Memory(args) => {
            let world = World::start_with(false, args.gateway_binary.clone(), None).await?;
            let report = memory::run(&world, args).await?;
            emit(json, "memory", &report.render(), &report)
        }
        Command::Soak(args) => {
            let world = World::start_with(false, Some(args.gateway_binary.clone()), None).await?;
            let report = soak::run(std::sync::Arc::new(world), args).await?;
            emit(json, "soak", &report.render(), &report)
        }
        Command::Approval(args) => {
            let report = approval::run(args).await?;
            emit(json, "approval", &report.render(), &report)
        }
        Command::Exchange(args) => {
            let report = exchange::run(args).await?;
            emit(json, "exchange", &report.render(), &report)
        }
        Command::Console(args) => {
            let report = console::run(args).await?;
            emit(json, "console", &report.render(), &report)
        }
        Command::LargeBodies(args) => {
            let report = large_bodies::run(args).await?;
            emit(json, "large-bodies", &report.render(), &report)
        }
        Command::Stdio(args) => {
            let report = stdio::run(args).await?;
            emit(json, "stdio", &report.render(), &report)
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    cli.command.validate()?;
    // Pingora logs every request whose upstream socket the kill switch shuts as an ERROR
    // ("Fail to proxy"): a thousand expected lines per kill-switch run, so its proxy logs are
    // off unless RUST_LOG asks for them.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG)),
        )
        .with_writer(std::io::stderr)
        .init();
    ensure_fd_limit(cli.command.sessions())?;
    let bound = cli.command.time_bound();
    tokio::time::timeout(bound, run(&cli))
        .await
        .with_context(|| format!("the run did not finish within its bound of {bound:?}"))?
}
