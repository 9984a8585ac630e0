//! Intake throughput: systemd unit signals per second through the daemon's sources (dispatch,
//! sender check, rendering with volatile scrubbing, intake queue) on a private dbus-daemon, as a
//! ratio against the bus's own ceiling measured in the same run: the same emitter flat out to a
//! bare subscriber that only counts what arrives. Goal: intake ≥ 0.8× the ceiling.
//!
//! The emitter owns `org.freedesktop.systemd1` and sends what systemd sends for a unit change:
//! `PropertiesChanged` on the unit's type interface (Result), then on `…systemd1.Unit` (states,
//! timestamps, invocation id), for 200 units whose states alternate, so every pair is one event.
//!
//!     cargo bench --bench intake

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anomalyd::config::Config;
use anomalyd::metrics::Metrics;
use anomalyd::pipeline::{Flow, Intake};
use futures_util::StreamExt;
use zbus::zvariant::Value;
use zbus::{Connection, MatchRule, MessageStream};

const UNITS: usize = 200;
const CHANGES: usize = 20_000;
const ROUNDS: usize = 3;

fn unit_path(i: usize) -> String {
    format!("/org/freedesktop/systemd1/unit/bench_2d{i}_2eservice")
}

async fn emit_changes(conn: &Connection, round: usize) -> anyhow::Result<()> {
    for n in 0..CHANGES {
        let path = unit_path(n % UNITS);
        // States alternate per unit (and per round), so no change repeats the unit's last text.
        let up = (n / UNITS + round).is_multiple_of(2);
        let result = if up { "success" } else { "exit-code" };
        let service: HashMap<&str, Value> = HashMap::from([
            ("Result", Value::from(result)),
            ("MainPID", Value::from(1000 + n as u32)),
        ]);
        conn.emit_signal(
            None::<&str>,
            path.as_str(),
            "org.freedesktop.DBus.Properties",
            "PropertiesChanged",
            &(
                "org.freedesktop.systemd1.Service",
                service,
                Vec::<&str>::new(),
            ),
        )
        .await?;
        let unit: HashMap<&str, Value> = HashMap::from([
            (
                "ActiveState",
                Value::from(if up { "active" } else { "failed" }),
            ),
            (
                "SubState",
                Value::from(if up { "running" } else { "failed" }),
            ),
            ("LoadState", Value::from("loaded")),
            (
                "ActiveEnterTimestamp",
                Value::from(1_763_700_000_000_000u64 + n as u64),
            ),
            ("InvocationID", Value::from(vec![n as u8; 16])),
        ]);
        conn.emit_signal(
            None::<&str>,
            path.as_str(),
            "org.freedesktop.DBus.Properties",
            "PropertiesChanged",
            &("org.freedesktop.systemd1.Unit", unit, Vec::<&str>::new()),
        )
        .await?;
    }
    Ok(())
}

/// Emitter → bus → a subscriber that counts: signals/s.
async fn ceiling(emitter: &Connection, address: &str, round: usize) -> anyhow::Result<f64> {
    let receiver = zbus::connection::Builder::address(address)?
        .max_queued(1024)
        .build()
        .await?;
    let rule = MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .sender("org.freedesktop.systemd1")?
        .interface("org.freedesktop.DBus.Properties")?
        .path_namespace("/org/freedesktop/systemd1/unit")?
        .build();
    let mut stream = MessageStream::for_match_rule(rule, &receiver, Some(1024)).await?;
    let expected = 2 * CHANGES;
    let started = Instant::now();
    let count = tokio::spawn(async move {
        let mut seen = 0;
        while seen < expected {
            if stream.next().await.is_none() {
                break;
            }
            seen += 1;
        }
        seen
    });
    emit_changes(emitter, round).await?;
    let seen = tokio::time::timeout(Duration::from_secs(120), count).await??;
    anyhow::ensure!(seen == expected, "the subscriber saw {seen} of {expected}");
    Ok(expected as f64 / started.elapsed().as_secs_f64())
}

/// Emitter → bus → the daemon's sources → intake queue: signals/s, all of them rendered.
async fn intake(
    emitter: &Connection,
    address: &str,
    config: &Config,
    round: usize,
) -> anyhow::Result<f64> {
    let conn = zbus::connection::Builder::address(address)?
        .max_queued(1024)
        .build()
        .await?;
    let metrics = Arc::new(Metrics::default());
    let (intake, mut events) = Intake::channel(CHANGES + 16, metrics.clone());
    let tasks = anomalyd::sources::start(
        &conn,
        &config.sources,
        config.render.volatile.clone(),
        intake,
        metrics.clone(),
    )
    .await?;
    // Let the sources learn the emitter is systemd's owner.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let count = tokio::spawn(async move {
        let mut seen = 0;
        while seen < CHANGES {
            match events.recv().await {
                Some(Flow::Data(_)) => seen += 1,
                Some(Flow::Probe(_) | Flow::Retrain | Flow::Score(_)) => {}
                None => break,
            }
        }
        seen
    });
    emit_changes(emitter, round).await?;
    let seen = tokio::time::timeout(Duration::from_secs(120), count).await??;
    let elapsed = started.elapsed();
    anomalyd::sources::stop(tasks).await;
    let m = metrics.snapshot();
    anyhow::ensure!(
        seen == CHANGES && m.events_dropped == 0 && m.signals_malformed == 0,
        "rendered {seen} of {CHANGES}; {m:?}"
    );
    Ok((2 * CHANGES) as f64 / elapsed.as_secs_f64())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let bus = anomalyd::bus::PrivateBus::spawn(dir.path())?;
    let emitter = zbus::connection::Builder::address(bus.address())?
        .name("org.freedesktop.systemd1")?
        .build()
        .await?;
    let config = Config::from_toml(
        "[sources]\nnetwork_manager = false\nlogin1 = false\nudisks2 = false\n",
        "bench",
    )?;

    let (mut ceilings, mut intakes) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        // Alternate, so drift in the machine's load hits both alike.
        ceilings.push(ceiling(&emitter, bus.address(), round).await?);
        intakes.push(intake(&emitter, bus.address(), &config, round).await?);
    }
    let (c, i) = (median(ceilings.clone()), median(intakes.clone()));
    println!(
        "intake bench: {CHANGES} unit changes ({} signals) per run, median of {ROUNDS}",
        2 * CHANGES
    );
    println!("  bus ceiling (emitter → bare subscriber): {c:>9.0} signals/s   runs {ceilings:.0?}");
    println!("  intake (dispatch + render + queue):      {i:>9.0} signals/s   runs {intakes:.0?}");
    println!("  ratio intake / ceiling: {:.2}  (goal ≥ 0.80)", i / c);
    Ok(())
}
