use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use anomalyd::config::{Config, Overrides};
use anomalyd::EXIT_CONFIG;

/// Infrastructure anomaly detection over D-Bus.
#[derive(Parser)]
#[command(name = "anomalyd", version, about)]
struct Cli {
    /// Configuration file [default: /etc/anomalyd/anomalyd.toml when present, else built-in defaults]
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Bus to watch and serve on: system, session, or a D-Bus address (overrides [bus])
    #[arg(long, global = true, value_name = "system|session|ADDRESS")]
    bus: Option<String>,
    /// Directory for the audit database, index snapshots and caches (overrides daemon.state_dir)
    #[arg(long, global = true, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Where logs go: auto (journald under systemd), journald, stderr (overrides daemon.log)
    #[arg(long, global = true, value_name = "auto|journald|stderr")]
    log: Option<String>,
    /// Validate the configuration and exit: 0 when valid, 78 (EX_CONFIG) when not
    #[arg(long)]
    check_config: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run a self-contained demonstration: a private bus, the daemon on it, and a replay of
    /// systemd, NetworkManager and login1 signals with injected faults
    Demo(anomalyd::demo::DemoArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let overrides = Overrides {
        bus: cli.bus.clone(),
        state_dir: cli.state_dir.clone(),
        log: cli.log.clone(),
    };
    if let Some(Command::Demo(args)) = cli.command {
        return report(anomalyd::demo::run(
            args,
            cli.config.as_deref(),
            cli.state_dir.clone(),
        ));
    }
    let config = match Config::load(cli.config.as_deref(), &overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("anomalyd: configuration error: {e}");
            return ExitCode::from(EXIT_CONFIG as u8);
        }
    };
    if cli.check_config {
        println!("{}: configuration valid", config.origin);
        return ExitCode::SUCCESS;
    }
    if let Err(e) = anomalyd::logging::init(config.daemon.log, &config.daemon.log_level) {
        eprintln!("anomalyd: {e}");
        return ExitCode::FAILURE;
    }
    report(serve(config))
}

fn serve(config: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("anomalyd-io")
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let bus = config.bus.clone();
        anomalyd::daemon::run(config, &bus, termination()).await?;
        Ok(())
    })
}

/// Resolves on SIGTERM (systemctl stop) or SIGINT (Ctrl-C).
async fn termination() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stopping");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "anomalyd failed");
            eprintln!("anomalyd: {e:#}");
            ExitCode::FAILURE
        }
    }
}
