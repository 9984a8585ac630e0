//! anomalyctl: the operator's client for a running anomalyd.

use std::collections::HashMap;

use anyhow::Context;
use clap::{Parser, Subcommand};
use futures_util::StreamExt;
use zbus::zvariant::OwnedValue;

use anomalyd::api::{INTERFACE, OBJECT_PATH};
use anomalyd::audit::checkpoint::{parse_checkpoints, read_checkpoint_file};
use anomalyd::audit::{Checkpoint, CHECKPOINT_MESSAGE_ID};
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
    /// Recompute every hash of the audit chain. Exit 0 when intact, 1 when broken (the first bad
    /// seq is printed), 2 when it cannot be checked
    Verify {
        /// Verify this database file offline (read-only, safe while the daemon runs) instead of
        /// asking the daemon
        #[arg(long, value_name = "PATH")]
        db: Option<std::path::PathBuf>,
        /// A head the chain must contain (from `anomalyctl head` or a checkpoint); repeatable
        #[arg(long, value_name = "SEQ:HEX")]
        expect_head: Vec<Checkpoint>,
        /// A checkpoint file (`SEQ:HEX` lines, or `journalctl -o json` output; `-` for stdin);
        /// repeatable
        #[arg(long, value_name = "FILE")]
        checkpoints: Vec<std::path::PathBuf>,
        /// Also hold the chain against the checkpoints in the system journal
        /// (`journalctl MESSAGE_ID=…`; needs permission to read it)
        #[arg(long)]
        journal: bool,
    },
    /// Why an event got its verdict: its score against the threshold, and the nearest baseline
    /// events with their distances and counts
    Explain {
        /// The event's seq (from `watch` or the log)
        seq: u64,
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Mark an event benign: its text joins the baseline, so it stops alerting; recorded in the
    /// audit chain with the note and your uid
    Benign {
        seq: u64,
        /// Why it is benign (kept in the chain)
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Train the baseline index again now, in the background
    Retrain,
    /// Print the chain's head as SEQ:HEX, for `verify --expect-head` later
    Head {
        /// Read this database file instead of asking the daemon
        #[arg(long, value_name = "PATH")]
        db: Option<std::path::PathBuf>,
    },
}

/// Exit status of `verify` when the chain is broken.
const EXIT_BROKEN: u8 = 1;
/// Exit status when a command cannot do its work (no daemon, unreadable file).
const EXIT_ERROR: u8 = 2;

fn read_checkpoints(
    files: &[std::path::PathBuf],
    journal: bool,
) -> anyhow::Result<Vec<Checkpoint>> {
    let mut all = Vec::new();
    for file in files {
        if file.as_os_str() == "-" {
            let text = std::io::read_to_string(std::io::stdin())
                .context("reading checkpoints from stdin")?;
            all.extend(parse_checkpoints(&text).map_err(|e| anyhow::anyhow!("stdin: {e}"))?);
        } else {
            all.extend(read_checkpoint_file(file).map_err(anyhow::Error::msg)?);
        }
    }
    if journal {
        let out = std::process::Command::new("journalctl")
            .args(["--no-pager", "-o", "json"])
            .arg(format!("MESSAGE_ID={CHECKPOINT_MESSAGE_ID}"))
            .output()
            .context("running journalctl")?;
        anyhow::ensure!(
            out.status.success(),
            "journalctl failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        let text = String::from_utf8_lossy(&out.stdout);
        all.extend(parse_checkpoints(&text).map_err(|e| anyhow::anyhow!("journal: {e}"))?);
    }
    Ok(all)
}

/// Prints a verification's outcome the same way for both paths; returns the exit status.
fn print_verdict(records: u64, head: Option<(u64, String)>, failure: Option<(u64, String)>) -> u8 {
    let head = head.map_or("none".to_owned(), |(seq, hash)| format!("{seq}:{hash}"));
    match failure {
        None => {
            println!("chain OK: {records} records, head {head}");
            0
        }
        Some((seq, problem)) => {
            println!("chain BROKEN at seq {seq}: {problem}");
            println!("  {records} records verified before it; last good head {head}");
            EXIT_BROKEN
        }
    }
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
        Ok(code) => std::process::ExitCode::from(code),
        Err(e) => {
            eprintln!("anomalyctl: {e:#}");
            std::process::ExitCode::from(EXIT_ERROR)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<u8> {
    // Offline commands need no bus.
    match &cli.command {
        Command::Verify {
            db: Some(db),
            expect_head,
            checkpoints,
            journal,
        } => {
            let mut expected = expect_head.clone();
            expected.extend(read_checkpoints(checkpoints, *journal)?);
            let report = anomalyd::audit::verify(db, &expected)?;
            return Ok(print_verdict(
                report.records,
                report.head.map(|h| (h.seq, hex::encode(h.hash))),
                report.failure.map(|(seq, p)| (seq, p.to_string())),
            ));
        }
        Command::Head { db: Some(db) } => {
            match anomalyd::audit::read_head(db)? {
                Some(head) => println!("{head}"),
                None => anyhow::bail!("{} holds no records", db.display()),
            }
            return Ok(0);
        }
        _ => {}
    }
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
            let count = |k: &str| {
                stats
                    .get(k)
                    .and_then(|v| u64::try_from(v).ok())
                    .unwrap_or(0)
            };
            let (hits, misses) = (count("EmbedCacheHits"), count("EmbedCacheMisses"));
            if hits + misses > 0 {
                let rate = 100.0 * hits as f64 / (hits + misses) as f64;
                println!("{:>22}: {rate:.1}%", "EmbedCacheHitRate");
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
        Command::Verify {
            db: None,
            expect_head,
            checkpoints,
            journal,
        } => {
            let (ok, records, head_seq, head_hash, bad_seq, problem): (
                bool,
                u64,
                u64,
                String,
                u64,
                String,
            ) = proxy.call("VerifyChain", &()).await.with_context(|| {
                format!(
                    "VerifyChain on {} (is anomalyd running on the {} bus?)",
                    cli.name, target
                )
            })?;
            let head = (head_seq > 0).then(|| (head_seq, head_hash.clone()));
            if !ok {
                return Ok(print_verdict(records, head, Some((bad_seq, problem))));
            }
            // The daemon checked its own checkpoint file; heads given here are checked against
            // its answer: each must be at or before its head, and the daemon's head must match
            // where they coincide. For a full check of older heads, verify the file with --db.
            let mut expected = expect_head.clone();
            expected.extend(read_checkpoints(&checkpoints, journal)?);
            if let Some(beyond) = expected.iter().find(|c| c.seq > head_seq) {
                return Ok(print_verdict(
                    records,
                    head,
                    Some((
                        beyond.seq,
                        format!(
                            "truncated: the chain ends at seq {head_seq}, before this checkpoint"
                        ),
                    )),
                ));
            }
            if let Some(bad) = expected
                .iter()
                .find(|c| c.seq == head_seq && hex::encode(c.hash) != head_hash)
            {
                return Ok(print_verdict(
                    records,
                    head,
                    Some((bad.seq, "checkpoint mismatch at the head".into())),
                ));
            }
            if expected.iter().any(|c| c.seq < head_seq) {
                eprintln!(
                    "anomalyctl: heads before the daemon's head are checked only with --db PATH"
                );
            }
            return Ok(print_verdict(records, head, None));
        }
        Command::Head { db: None } => {
            let (seq, hash): (u64, String) = proxy.call("Head", &()).await.with_context(|| {
                format!(
                    "Head on {} (is anomalyd running on the {} bus?)",
                    cli.name, target
                )
            })?;
            anyhow::ensure!(seq > 0, "the daemon's audit log holds no records");
            println!("{seq}:{hash}");
        }
        Command::Explain { seq, json } => {
            type Neighbour = (u64, f64, String, u64, u64);
            let (text, verdict, score, threshold, neighbours): (
                String,
                String,
                f64,
                f64,
                Vec<Neighbour>,
            ) = proxy
                .call("Explain", &(seq,))
                .await
                .with_context(|| format!("Explain {seq}"))?;
            if json {
                let neighbours: Vec<_> = neighbours
                    .iter()
                    .map(|(id, d, t, n, first)| {
                        serde_json::json!({"id": id, "distance": d, "text": t, "count": n, "first_seq": first})
                    })
                    .collect();
                println!(
                    "{}",
                    serde_json::json!({"seq": seq, "text": text, "verdict": verdict,
                        "score": score.is_finite().then_some(score),
                        "threshold": threshold.is_finite().then_some(threshold),
                        "neighbours": neighbours})
                );
            } else {
                println!("#{seq} {verdict}: {text}");
                if score.is_finite() {
                    let against = if threshold.is_finite() {
                        format!(" (threshold {threshold:.4})")
                    } else {
                        String::new()
                    };
                    println!("score {score:.4}{against}");
                }
                if neighbours.is_empty() {
                    println!("no baseline neighbours (the baseline was empty, or the record is not a scored event)");
                } else {
                    println!("{:>9} {:>8} {:>8}  TEXT", "DISTANCE", "COUNT", "FIRST");
                    for (_, distance, text, count, first) in &neighbours {
                        println!("{distance:>9.4} {count:>8} {first:>8}  {text}");
                    }
                }
            }
        }
        Command::Benign { seq, note } => {
            let mark: u64 = proxy
                .call("MarkBenign", &(seq, note.as_str()))
                .await
                .with_context(|| format!("MarkBenign {seq}"))?;
            println!("#{seq} marked benign as record #{mark}");
        }
        Command::Retrain => {
            let () = proxy.call("Retrain", &()).await.context("Retrain")?;
            println!("retraining in the background; IndexSwaps in `anomalyctl stats` counts swaps");
        }
        Command::Verify { db: Some(_), .. } | Command::Head { db: Some(_) } => {
            unreachable!("offline commands returned above")
        }
    }
    Ok(0)
}
