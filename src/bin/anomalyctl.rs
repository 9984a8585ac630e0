//! anomalyctl: the operator's client for a running anomalyd.

use std::collections::HashMap;

use anyhow::Context;
use clap::{Parser, Subcommand};
use futures_util::StreamExt;
use zbus::zvariant::OwnedValue;

use anomalyd::api::{INTERFACE, OBJECT_PATH};
use anomalyd::config::{BusTarget, DEFAULT_BUS_NAME};

#[derive(Parser)]
#[command(
    name = "anomalyctl",
    version,
    about = "Query a running anomalyd over D-Bus"
)]
struct Cli {
    /// Bus the daemon serves on: system, session, or a D-Bus address
    #[arg(
        long,
        global = true,
        default_value = "system",
        value_name = "system|session|ADDRESS"
    )]
    bus: String,
    /// The daemon's bus name
    #[arg(long, global = true, default_value = DEFAULT_BUS_NAME)]
    name: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the daemon's counters and facts
    Stats,
    /// Print anomalies as they are detected, until interrupted
    Watch,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("anomalyctl: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("anomalyctl: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let target =
        BusTarget::parse(&cli.bus).map_err(|e| anyhow::anyhow!("--bus {}: {e}", cli.bus))?;
    let conn = anomalyd::bus::connect(&target).await?;
    let proxy = zbus::Proxy::new(&conn, cli.name.clone(), OBJECT_PATH, INTERFACE).await?;
    match cli.command {
        Command::Stats => {
            let stats: HashMap<String, OwnedValue> =
                proxy.call("Stats", &()).await.with_context(|| {
                    format!(
                        "Stats on {} (is anomalyd running on the {} bus?)",
                        cli.name, target
                    )
                })?;
            let mut keys: Vec<_> = stats.keys().cloned().collect();
            keys.sort();
            for k in keys {
                println!("{k:>22}: {}", anomalyd::render::value_text(&stats[&k]));
            }
        }
        Command::Watch => {
            let mut signals = proxy.receive_signal("AnomalyDetected").await?;
            eprintln!(
                "watching {} on the {} bus for anomalies (Ctrl-C to stop)",
                cli.name, target
            );
            while let Some(msg) = signals.next().await {
                let (seq, _usec, source, text, score): (u64, u64, String, String, f64) =
                    msg.body().deserialize()?;
                println!("#{seq:<6} score {score:.3}  {source:<14} {text}");
            }
        }
    }
    Ok(())
}
