//! `anomalyd demo` (part of the `anomalyd` binary, a client of the daemon): the main job on a machine with no system bus. It starts a private
//! `dbus-daemon`, runs this same binary as the daemon on it, and replays a generated stream of
//! infrastructure signals from connections that own `org.freedesktop.systemd1`,
//! `org.freedesktop.NetworkManager` and `org.freedesktop.login1` — serving the objects the daemon
//! asks about, as the real services do — printing each anomaly as the daemon announces it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::StreamExt;
use zbus::zvariant::OwnedValue;

use anomalyd::api::{AnomalyDetectedArgs, AnomalyRepeatedArgs, INTERFACE, OBJECT_PATH};
use anomalyd::bus::PrivateBus;
use anomalyd::config::DEFAULT_BUS_NAME;
use anomalyd::emulate;

#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Signals per second to replay
    #[arg(long, default_value_t = 300)]
    pub rate: u32,
    /// Seed for the generated event stream
    #[arg(long, default_value_t = 2026)]
    pub seed: u64,
    /// Keep the bus and the daemon running after the replay, for anomalyctl and busctl
    #[arg(long)]
    pub keep_running: bool,
}

/// The configuration the demo daemon runs with: defaults, but a shorter warm-up so the demo is quick.
const DEMO_CONFIG: &str = r#"# Written by `anomalyd demo`; see config/anomalyd.toml for every key.
[daemon]
log = "stderr"
log_level = "info"

[detector]
warmup_events = 300
"#;

pub fn run(
    args: DemoArgs,
    config: Option<&Path>,
    state_dir: Option<PathBuf>,
    model: Option<PathBuf>,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(demo(args, config, state_dir, model))
}

async fn demo(
    args: DemoArgs,
    config: Option<&Path>,
    state_dir: Option<PathBuf>,
    model: Option<PathBuf>,
) -> anyhow::Result<()> {
    // The project-local model that scripts/fetch-model installs, when run from a checkout.
    let model = model.or_else(|| {
        let local = PathBuf::from(emulate::PROJECT_MODEL_DIR);
        local.join("model.safetensors").is_file().then_some(local)
    });
    let state_dir = state_dir.unwrap_or_else(|| PathBuf::from("state/demo"));
    std::fs::create_dir_all(&state_dir)
        .with_context(|| format!("creating {}", state_dir.display()))?;
    let state_dir = state_dir
        .canonicalize()
        .with_context(|| format!("resolving {}", state_dir.display()))?;
    for stale in ["audit.sqlite", "audit.sqlite-wal", "audit.sqlite-shm"] {
        let _ = std::fs::remove_file(state_dir.join(stale));
    }
    let config_path = match config {
        Some(c) => c.to_path_buf(),
        None => {
            let p = state_dir.join("anomalyd.toml");
            std::fs::write(&p, DEMO_CONFIG).with_context(|| format!("writing {}", p.display()))?;
            p
        }
    };

    let bus = PrivateBus::spawn(&state_dir.join("bus"))?;
    println!("▶ private bus         {}", bus.address());
    let log_path = state_dir.join("anomalyd.log");
    let anomalyd = std::env::current_exe().context("finding this executable")?;
    let daemon = emulate::DaemonProcess::spawn(
        &anomalyd,
        &config_path,
        bus.address(),
        model.as_deref(),
        &state_dir,
        &log_path,
    )?;
    println!(
        "▶ daemon              pid {} (log: {})",
        daemon.0.id(),
        log_path.display()
    );

    let conn = anomalyd::bus::connect(&bus.target()).await?;
    emulate::wait_for_name(&conn, DEFAULT_BUS_NAME, Duration::from_secs(60), &log_path).await?;
    let replayer = emulate::replay::Replayer::start(bus.address()).await?;

    let proxy = zbus::Proxy::new(&conn, DEFAULT_BUS_NAME, OBJECT_PATH, INTERFACE).await?;
    // Both signals on one stream, in the order the bus delivers them.
    let anomalies = proxy.receive_signal("AnomalyDetected").await?;
    let repeats = proxy.receive_signal("AnomalyRepeated").await?;
    let mut signals = futures_util::stream::select(anomalies, repeats);
    let printed = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let printed_by_task = printed.clone();
    let printer = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some(msg) = signals.next().await {
            let body = msg.body();
            let repeated = msg
                .header()
                .member()
                .is_some_and(|m| m.as_str() == "AnomalyRepeated");
            if repeated {
                if let Ok(AnomalyRepeatedArgs {
                    seq,
                    source,
                    text,
                    score,
                    incident,
                    repeat,
                    ..
                }) = body.deserialize::<AnomalyRepeatedArgs>()
                {
                    println!(
                        "  ↻ REPEAT   #{seq:<5} score {score:.3}  [{source}] {text} (incident #{incident}, repeat {repeat})"
                    );
                    seen.push(text);
                    printed_by_task.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            } else if let Ok(AnomalyDetectedArgs {
                seq,
                source,
                text,
                score,
                ..
            }) = body.deserialize::<AnomalyDetectedArgs>()
            {
                println!("  ⚠ ANOMALY  #{seq:<5} score {score:.3}  [{source}] {text}");
                seen.push(text);
                printed_by_task.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        seen
    });

    let steps = emulate::scenario::generate(args.seed, 120, 220);
    let learning = steps
        .iter()
        .position(|s| s.fault.is_some())
        .unwrap_or(steps.len());
    println!(
        "▶ replaying {} signals at {}/s: {} of normal traffic for the baseline, then faults among more normal traffic\n",
        steps.len(),
        args.rate,
        learning
    );
    let period = Duration::from_secs_f64(1.0 / f64::from(args.rate.max(1)));
    let started = Instant::now();
    let mut last_fault = None;
    let mut emitted = 0u64;
    for (i, step) in steps.iter().enumerate() {
        if i == learning {
            println!("  … baseline learned; faults start now");
        }
        if step.fault.is_some() && step.fault != last_fault {
            println!("  ✱ injecting: {}", step.fault.unwrap_or_default());
        }
        last_fault = step.fault;
        emitted += replayer.emit(&step.signal).await? as u64;
        tokio::time::sleep_until((started + period * (i as u32 + 1)).into()).await;
    }

    let counters = wait_until_recorded(&proxy, emitted).await?;
    let stat = |k: &str| counters.get(k).copied().unwrap_or(0);
    // Each anomaly's signal follows its commit: wait (briefly) until every one has been printed.
    let printing = Instant::now() + Duration::from_secs(5);
    while printed.load(std::sync::atomic::Ordering::Relaxed) < stat("Anomalies")
        && Instant::now() < printing
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "\n▶ done in {:.1}s: {} signals, {} records written, {} anomalies, {} dropped",
        started.elapsed().as_secs_f64(),
        emitted,
        stat("RecordsWritten"),
        stat("Anomalies"),
        stat("EventsDropped"),
    );
    let db = state_dir.join("audit.sqlite");
    let anomalyctl = anomalyd.with_file_name("anomalyctl");
    let (anomalyd, anomalyctl) = (anomalyd.display(), anomalyctl.display());
    println!("\nTry next:");
    println!("  sqlite3 {} \"SELECT seq, verdict, round(score,3), text FROM records WHERE verdict='anomaly'\"", db.display());
    if args.keep_running {
        println!("  {anomalyctl} --bus '{}' stats", bus.address());
        println!("  {anomalyctl} --bus '{}' watch", bus.address());
        println!(
            "  busctl --address='{}' call {DEFAULT_BUS_NAME} {OBJECT_PATH} {INTERFACE} Stats",
            bus.address()
        );
        println!("\nThe bus and the daemon keep running; Ctrl-C ends the demo.");
        let _ = tokio::signal::ctrl_c().await;
    } else {
        println!("  {anomalyd} demo --keep-running     # then query the live daemon:");
        println!("  {anomalyctl} --bus '<address it prints>' stats | watch");
        println!("  {anomalyd} --check-config --config config/anomalyd.toml");
    }
    drop(replayer);
    drop(daemon);
    printer.abort();
    Ok(())
}

/// Waits until the daemon has taken in every emitted signal and its pipeline has gone quiet.
async fn wait_until_recorded(
    proxy: &zbus::Proxy<'_>,
    emitted: u64,
) -> anyhow::Result<HashMap<String, u64>> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last_written = u64::MAX;
    let mut unchanged_since = Instant::now();
    loop {
        let stats: HashMap<String, OwnedValue> = proxy.call("Stats", &()).await?;
        let counters = anomalyd::api::counters(&stats);
        let get = |k: &str| counters.get(k).copied().unwrap_or(0);
        let seen = get("EventsReceived") + get("EventsIgnored") + get("EventsForged");
        let written = get("RecordsWritten");
        if written != last_written {
            unchanged_since = Instant::now();
        }
        // A batch being embedded writes nothing for a while: the queue must be empty and the
        // count still for longer than a batch takes.
        let settled =
            get("QueueDepth") == 0 && unchanged_since.elapsed() >= Duration::from_millis(1500);
        if (seen >= emitted && settled) || Instant::now() > deadline {
            return Ok(counters);
        }
        last_written = written;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
