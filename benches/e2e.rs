//! End to end: the real `anomalyd` binary runs as its own process on a private dbus-daemon while
//! a load generator (`anomalyd::emulate::load`) sends what systemd and NetworkManager send for a busy
//! fleet: unit state changes, finished jobs and device transitions, nearly all repeating texts
//! seen before and `--novel` of the unit changes naming a unit never seen. Each unit change carries
//! its emission time in `StateChangeTimestamp` and each job its id, which the daemon keeps in the
//! record's fields; a reader polls the audit database (read-only, every millisecond) and takes a
//! record's commit time as the moment it first sees it. So latency is emission → committed
//! verdict, as an operator would see it, with at most a poll's resolution added.
//!
//! Phases, in one daemon's life: a warm-up that teaches it the fleet (not measured), the set
//! rates, then flat-out runs alternated with the bus ceiling: the same emitter flat out on a
//! second private bus to a bare subscriber that only counts, so the daemon is idle meanwhile.
//! Goals: flat out ≥ 0.5× the ceiling; p99 ≤ 50 ms at 1,000 events/s.
//!
//!     cargo bench --bench e2e -- [--rates 1000,3000] [--seconds 10] [--novel 0.001]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anomalyd::bus::PrivateBus;
use anomalyd::emulate::load::Load;
use anomalyd::emulate::replay::Replayer;
use anomalyd::emulate::scenario::Signal;
use anomalyd::emulate::{wait_for_name, DaemonProcess};
use anomalyd::event::now_usec;
use anyhow::{ensure, Context};
use clap::Parser;
use futures_util::StreamExt;
use zbus::zvariant::OwnedValue;
use zbus::{MatchRule, MessageStream};

#[derive(Debug, Parser)]
struct Args {
    /// Set rates, events per second, each held for --seconds
    #[arg(long, value_delimiter = ',', default_value = "1000,3000")]
    rates: Vec<u32>,
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Events in each flat-out run
    #[arg(long, default_value_t = 30_000)]
    flat_events: usize,
    /// Flat-out runs, each followed by a bus-ceiling run
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Share of unit changes that name a unit never seen before (texts no cache holds)
    #[arg(long, default_value_t = 0.001)]
    novel: f64,
    /// Events that teach the daemon the fleet first, sent at 2,000/s, not measured
    #[arg(long, default_value_t = 6_000)]
    warmup_events: usize,
    /// TOML appended to the daemon's configuration (the shipped defaults otherwise)
    #[arg(long, default_value = "")]
    daemon_config: String,
    /// The model directory (default: the checkout's models/all-MiniLM-L6-v2)
    #[arg(long)]
    model: Option<PathBuf>,
    /// The daemon binary (default: the one cargo built beside this bench; another machine's copy
    /// when the bench is carried there, as scripts/gpu-check does)
    #[arg(long)]
    daemon: Option<PathBuf>,
    /// Keep the daemon's log here (default: a temporary file, removed at the end)
    #[arg(long)]
    daemon_log: Option<PathBuf>,
    /// Copy the daemon's audit database here once it has stopped (what it flagged, and why)
    #[arg(long)]
    keep_audit: Option<PathBuf>,
    #[arg(long, default_value_t = 2026)]
    seed: u64,
    /// Also write the results as JSON here
    #[arg(long)]
    json: Option<PathBuf>,
    /// Passed by `cargo bench`
    #[arg(long, hide = true)]
    bench: bool,
}

/// What the audit-log reader has seen, cumulatively.
#[derive(Debug, Default, Clone)]
struct Seen {
    events: u64,
    /// Emission → first seen committed, for tagged events (unit changes and jobs).
    latencies_usec: Vec<u64>,
    last_commit_usec: u64,
    /// Why the reader stopped early, if it did.
    error: Option<String>,
}

/// Polls the audit database for new records from its own read-only connection.
struct AuditReader {
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
}

impl AuditReader {
    fn start(db: &Path, jobs_sent: Arc<Mutex<HashMap<u32, u64>>>) -> anyhow::Result<AuditReader> {
        let conn = rusqlite::Connection::open_with_flags(
            db,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .with_context(|| format!("opening {}", db.display()))?;
        // The daemon checkpoints the WAL now and then; wait rather than fail on a busy moment.
        conn.busy_timeout(Duration::from_secs(5))?;
        let seen = Arc::new(Mutex::new(Seen::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen_w, stop_r) = (seen.clone(), stop.clone());
        let thread = std::thread::spawn(move || -> anyhow::Result<()> {
            let record_error = |e: anyhow::Error| {
                seen_w.lock().expect("reader lock").error = Some(format!("{e:#}"));
                e
            };
            let poll = || -> anyhow::Result<()> {
                let mut last_seq: i64 =
                    conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM records", [], |r| {
                        r.get(0)
                    })?;
                let mut query = conn
                    .prepare("SELECT seq, kind, fields FROM records WHERE seq > ?1 ORDER BY seq")?;
                while !stop_r.load(Relaxed) {
                    let rows: Vec<(i64, String, String)> = query
                        .query_map([last_seq], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                        .collect::<Result<_, _>>()?;
                    let now = now_usec();
                    if rows.is_empty() {
                        std::thread::sleep(Duration::from_millis(1));
                        continue;
                    }
                    let mut seen = seen_w.lock().expect("reader lock");
                    let jobs = jobs_sent.lock().expect("jobs lock");
                    for (seq, kind, fields) in rows {
                        last_seq = seq;
                        if kind != "event" {
                            continue;
                        }
                        seen.events += 1;
                        seen.last_commit_usec = now;
                        let fields: serde_json::Value = serde_json::from_str(&fields)?;
                        let sent = fields["StateChangeTimestamp"].as_u64().or_else(|| {
                            let id = fields["job_id"].as_u64()?;
                            jobs.get(&u32::try_from(id).ok()?).copied()
                        });
                        if let Some(sent) = sent {
                            seen.latencies_usec.push(now.saturating_sub(sent));
                        }
                    }
                }
                Ok(())
            };
            poll().map_err(record_error)
        });
        Ok(AuditReader {
            seen,
            stop,
            thread: Some(thread),
        })
    }

    fn snapshot(&self) -> Seen {
        self.seen.lock().expect("reader lock").clone()
    }

    /// The reader stopped on its own: an error, which `finish` reports.
    fn has_stopped(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    fn finish(mut self) -> anyhow::Result<()> {
        self.stop.store(true, Relaxed);
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => anyhow::bail!("the audit reader panicked"),
            None => Ok(()),
        }
    }
}

/// CPU time and memory of a process, from /proc.
#[derive(Debug, Clone, Copy)]
struct ProcUsage {
    cpu_s: f64,
    rss_kib: u64,
    hwm_kib: u64,
}

/// The command name and CPU seconds (user + system) of a `/proc/…/stat` line. The name is in
/// parentheses and may hold spaces, so the fields are counted from its closing one.
fn parse_stat(stat: &str) -> Option<(&str, f64)> {
    let (head, after) = stat.rsplit_once(')')?;
    let name = head.split_once('(')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((name, ticks / per_second))
}

fn proc_usage(pid: u32) -> anyhow::Result<ProcUsage> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let (_, cpu_s) = parse_stat(&stat).context("odd /proc stat")?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = |key: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    Ok(ProcUsage {
        cpu_s,
        rss_kib: kib("VmRSS:"),
        hwm_kib: kib("VmHWM:"),
    })
}

/// CPU seconds of each live thread of a process, by thread id, with its name.
fn thread_cpu(pid: u32) -> HashMap<u32, (String, f64)> {
    let mut out = HashMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let Some((name, cpu_s)) = parse_stat(&stat) else {
            continue;
        };
        out.insert(tid, (name.to_owned(), cpu_s));
    }
    out
}

/// Where a phase's CPU went, in cores, per thread name (numbered workers counted as one), busiest
/// first. Threads that ended during the phase (the embedder's scoped workers live for one pass)
/// cannot be read any more: their time is the process's less the live threads', reported as
/// "ended threads".
fn thread_busy(
    before: &HashMap<u32, (String, f64)>,
    after: &HashMap<u32, (String, f64)>,
    process_cpu_s: f64,
    wall_s: f64,
) -> Vec<(String, f64)> {
    let mut by_name: HashMap<String, f64> = HashMap::new();
    let mut live = 0.0;
    for (tid, (name, cpu)) in after {
        let spent = cpu - before.get(tid).map_or(0.0, |(_, c)| *c);
        live += spent;
        let name = name.trim_end_matches(|c: char| c.is_ascii_digit());
        *by_name.entry(name.to_owned()).or_insert(0.0) += spent;
    }
    by_name.insert("ended threads".into(), (process_cpu_s - live).max(0.0));
    let mut busy: Vec<(String, f64)> = by_name
        .into_iter()
        .map(|(name, cpu)| (name, cpu / wall_s))
        .filter(|(_, cores)| *cores >= 0.01)
        .collect();
    busy.sort_by(|a, b| b.1.total_cmp(&a.1));
    busy
}

/// How far a `Stats` counter moved between two readings.
fn counter_delta(after: &HashMap<String, u64>, before: &HashMap<String, u64>, key: &str) -> u64 {
    after.get(key).unwrap_or(&0) - before.get(key).unwrap_or(&0)
}

/// The load generator: emits events and remembers when each job was sent.
struct Emitter {
    replayer: Replayer,
    load: Load,
    jobs_sent: Arc<Mutex<HashMap<u32, u64>>>,
}

impl Emitter {
    /// Sends one event; returns the bus signals it took.
    async fn send_one(&mut self) -> anyhow::Result<usize> {
        let event = self.load.next_event();
        let now = now_usec();
        if let Signal::JobRemoved { id, .. } = &event.signal {
            self.jobs_sent.lock().expect("jobs lock").insert(*id, now);
        }
        Ok(self.replayer.emit_stamped(&event.signal, Some(now)).await?)
    }

    /// `n` events, at `rate` per second or flat out; returns (signals, seconds taken).
    async fn send(&mut self, n: usize, rate: Option<u32>) -> anyhow::Result<(usize, f64)> {
        let started = Instant::now();
        let mut signals = 0;
        for i in 0..n {
            if let Some(rate) = rate {
                let due = started + Duration::from_secs_f64(i as f64 / f64::from(rate));
                if due > Instant::now() {
                    tokio::time::sleep_until(due.into()).await;
                }
            }
            signals += self.send_one().await?;
        }
        Ok((signals, started.elapsed().as_secs_f64()))
    }
}

/// One measured phase.
#[derive(Debug, serde::Serialize)]
struct Phase {
    name: String,
    emitted: usize,
    signals: usize,
    emit_rate: f64,
    committed: u64,
    dropped: u64,
    /// Committed events per second, first emission to last commit.
    events_per_s: f64,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    max_ms: Option<f64>,
    latency_samples: usize,
    cache_hit: Option<f64>,
    /// Daemon CPU in cores (1.0 = one core busy) over the phase.
    daemon_cpu_cores: Option<f64>,
    daemon_rss_mib: Option<f64>,
    queue_depth_peak: Option<u64>,
    /// The daemon's threads by name with the cores each kept busy, busiest first.
    daemon_threads: Vec<(String, f64)>,
    /// Events the daemon flagged (its `Anomalies` counter) in the phase: the fleet's traffic is
    /// normal, its new units included.
    flagged: Option<u64>,
}

fn percentile(sorted: &[u64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    Some(sorted[i] as f64 / 1000.0)
}

struct Daemon {
    process: DaemonProcess,
    stats: zbus::Proxy<'static>,
    log: PathBuf,
}

impl Daemon {
    async fn counters(&self) -> anyhow::Result<HashMap<String, u64>> {
        let stats: HashMap<String, OwnedValue> = self.stats.call("Stats", &()).await?;
        Ok(anomalyd::api::counters(&stats))
    }
}

/// Runs one phase against the daemon and waits until every event is committed or dropped.
async fn measure(
    name: String,
    daemon: &Daemon,
    reader: &AuditReader,
    emitter: &mut Emitter,
    n: usize,
    rate: Option<u32>,
) -> anyhow::Result<Phase> {
    let pid = daemon.process.0.id();
    let before = daemon.counters().await?;
    let seen_before = reader.snapshot();
    let usage_before = proc_usage(pid)?;
    let threads_before = thread_cpu(pid);
    let started_usec = now_usec();
    let started = Instant::now();
    let (signals, emit_s) = emitter.send(n, rate).await?;

    let deadline = Instant::now() + Duration::from_secs(120);
    let (after, seen) = loop {
        let after = daemon.counters().await?;
        let seen = reader.snapshot();
        let delta = |k: &str| counter_delta(&after, &before, k);
        let accounted =
            seen.events - seen_before.events + delta("EventsDropped") + delta("SignalsUnchanged");
        if accounted >= n as u64 {
            break (after, seen);
        }
        if reader.has_stopped() {
            anyhow::bail!(
                "{name}: the audit-log reader stopped: {}",
                seen.error.unwrap_or_else(|| "no error recorded".into())
            );
        }
        ensure!(
            Instant::now() < deadline,
            "{name}: only {accounted} of {n} events committed or dropped after 120 s; daemon log: {}",
            daemon.log.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let wall_s = started.elapsed().as_secs_f64();
    let usage_after = proc_usage(pid)?;
    let threads = thread_busy(
        &threads_before,
        &thread_cpu(pid),
        usage_after.cpu_s - usage_before.cpu_s,
        wall_s,
    );
    let delta = |k: &str| counter_delta(&after, &before, k);
    ensure!(
        delta("SignalsUnchanged") == 0 && delta("SignalsMalformed") == 0,
        "{name}: the load should give one record per event: {after:?}"
    );
    let committed = seen.events - seen_before.events;
    let mut latencies = seen.latencies_usec[seen_before.latencies_usec.len()..].to_vec();
    latencies.sort_unstable();
    let (hits, misses) = (delta("EmbedCacheHits"), delta("EmbedCacheMisses"));
    Ok(Phase {
        name,
        emitted: n,
        signals,
        emit_rate: n as f64 / emit_s,
        committed,
        dropped: delta("EventsDropped"),
        events_per_s: if committed == 0 {
            0.0
        } else {
            committed as f64 / ((seen.last_commit_usec.saturating_sub(started_usec)) as f64 / 1e6)
        },
        p50_ms: percentile(&latencies, 0.50),
        p99_ms: percentile(&latencies, 0.99),
        max_ms: latencies.last().map(|m| *m as f64 / 1000.0),
        latency_samples: latencies.len(),
        cache_hit: (hits + misses > 0).then(|| hits as f64 / (hits + misses) as f64),
        daemon_cpu_cores: Some((usage_after.cpu_s - usage_before.cpu_s) / wall_s),
        daemon_rss_mib: Some(usage_after.rss_kib as f64 / 1024.0),
        queue_depth_peak: after.get("QueueDepthPeak").copied(),
        daemon_threads: threads,
        flagged: Some(delta("Anomalies")),
    })
}

/// The same emitter flat out on its own bus to a subscriber that only counts what arrives.
async fn ceiling(
    address: &str,
    emitter: &mut Emitter,
    n: usize,
    round: usize,
) -> anyhow::Result<Phase> {
    let receiver = zbus::connection::Builder::address(address)?
        .max_queued(1024)
        .build()
        .await?;
    let counted = Arc::new(AtomicU64::new(0));
    let mut counters = Vec::new();
    for sender in ["org.freedesktop.systemd1", "org.freedesktop.NetworkManager"] {
        let rule = MatchRule::builder()
            .msg_type(zbus::message::Type::Signal)
            .sender(sender)?
            .build();
        let mut stream = MessageStream::for_match_rule(rule, &receiver, Some(1024)).await?;
        let counted = counted.clone();
        counters.push(tokio::spawn(async move {
            while stream.next().await.is_some() {
                counted.fetch_add(1, Relaxed);
            }
        }));
    }
    let started = Instant::now();
    let (signals, emit_s) = emitter.send(n, None).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while counted.load(Relaxed) < signals as u64 {
        ensure!(
            Instant::now() < deadline,
            "ceiling: the subscriber saw {} of {signals} signals",
            counted.load(Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    for c in counters {
        c.abort();
    }
    Ok(Phase {
        name: format!("bus ceiling #{round}"),
        emitted: n,
        signals,
        emit_rate: n as f64 / emit_s,
        committed: 0,
        dropped: 0,
        events_per_s: n as f64 / elapsed,
        p50_ms: None,
        p99_ms: None,
        max_ms: None,
        latency_samples: 0,
        cache_hit: None,
        daemon_cpu_cores: None,
        daemon_rss_mib: None,
        queue_depth_peak: None,
        daemon_threads: Vec::new(),
        flagged: None,
    })
}

fn print_phase(p: &Phase) {
    let opt = |v: Option<f64>, prec: usize| {
        v.map(|x| format!("{x:.prec$}"))
            .unwrap_or_else(|| "–".into())
    };
    println!(
        "{:<18} {:>7} {:>8.0} {:>9} {:>7} {:>9.0} {:>7} {:>7} {:>7} {:>6} {:>5} {:>7} {:>6}",
        p.name,
        p.emitted,
        p.emit_rate,
        p.committed,
        p.dropped,
        p.events_per_s,
        opt(p.p50_ms, 1),
        opt(p.p99_ms, 1),
        opt(p.max_ms, 1),
        opt(p.cache_hit.map(|h| h * 100.0), 1),
        opt(p.daemon_cpu_cores, 2),
        opt(p.daemon_rss_mib, 0),
        p.queue_depth_peak
            .map(|q| q.to_string())
            .unwrap_or_else(|| "–".into()),
    );
    if !p.daemon_threads.is_empty() {
        let threads: Vec<String> = p
            .daemon_threads
            .iter()
            .map(|(name, busy)| format!("{name} {busy:.2}"))
            .collect();
        println!("{:<18} daemon threads (cores): {}", "", threads.join(", "));
    }
    if let Some(flagged) = p.flagged {
        println!(
            "{:<18} flagged: {flagged} of {} ({:.3}%)",
            "",
            p.committed,
            flagged as f64 * 100.0 / p.committed.max(1) as f64
        );
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let model = args
        .model
        .clone()
        .unwrap_or_else(|| root.join("models/all-MiniLM-L6-v2"));
    ensure!(
        model.join("model.safetensors").is_file(),
        "{} has no model: run scripts/fetch-model",
        model.display()
    );
    let dir = tempfile::tempdir()?;
    let bus = PrivateBus::spawn(&dir.path().join("bus"))?;
    let ceiling_bus = PrivateBus::spawn(&dir.path().join("ceiling-bus"))?;
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state)?;
    let config = state.join("anomalyd.toml");
    std::fs::write(
        &config,
        format!("[daemon]\nlog = \"stderr\"\n{}\n", args.daemon_config),
    )?;
    let log = args
        .daemon_log
        .clone()
        .unwrap_or_else(|| dir.path().join("anomalyd.log"));
    let binary = args
        .daemon
        .clone()
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_anomalyd")));
    let process =
        DaemonProcess::spawn(&binary, &config, bus.address(), Some(&model), &state, &log)?;
    let conn = anomalyd::bus::connect(&bus.target()).await?;
    wait_for_name(
        &conn,
        "org.anomalyd.Detector1",
        Duration::from_secs(120),
        &log,
    )
    .await?;
    let stats = zbus::Proxy::new(
        &conn,
        "org.anomalyd.Detector1",
        anomalyd::api::OBJECT_PATH,
        anomalyd::api::INTERFACE,
    )
    .await?;
    let daemon = Daemon {
        process,
        stats,
        log: log.clone(),
    };
    let facts: HashMap<String, OwnedValue> = daemon.stats.call("Stats", &()).await?;
    let fact = |k: &str| {
        facts
            .get(k)
            .and_then(|v| String::try_from(v.try_clone().ok()?).ok())
            .unwrap_or_default()
    };
    let jobs_sent = Arc::new(Mutex::new(HashMap::new()));
    let mut emitter = Emitter {
        replayer: Replayer::start(bus.address()).await?,
        load: Load::new(args.seed, args.novel),
        jobs_sent: jobs_sent.clone(),
    };
    let mut ceiling_emitter = Emitter {
        replayer: Replayer::start(ceiling_bus.address()).await?,
        load: Load::new(args.seed, args.novel),
        jobs_sent: Arc::new(Mutex::new(HashMap::new())),
    };
    // Let the daemon's sources see systemd and NetworkManager appear on the bus.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let reader = AuditReader::start(&state.join("audit.sqlite"), jobs_sent)?;

    println!(
        "e2e bench: anomalyd pid {} ({}; {}), {} fleet units + {:.1}% novel unit changes; daemon log {}",
        daemon.process.0.id(),
        fact("EmbedderBackend"),
        fact("ModelId"),
        emitter.load.fleet_units(),
        args.novel * 100.0,
        log.display()
    );
    println!(
        "{:<18} {:>7} {:>8} {:>9} {:>7} {:>9} {:>7} {:>7} {:>7} {:>6} {:>5} {:>7} {:>6}",
        "phase",
        "events",
        "sent/s",
        "committed",
        "dropped",
        "events/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "hit %",
        "CPU",
        "RSS MiB",
        "qpeak"
    );
    let mut phases = Vec::new();
    let warm = measure(
        "warm-up".into(),
        &daemon,
        &reader,
        &mut emitter,
        args.warmup_events,
        Some(2000),
    )
    .await?;
    print_phase(&warm);
    phases.push(warm);
    for &rate in &args.rates {
        let n = (f64::from(rate) * args.seconds).round() as usize;
        let p = measure(
            format!("rate {rate}/s"),
            &daemon,
            &reader,
            &mut emitter,
            n,
            Some(rate),
        )
        .await?;
        print_phase(&p);
        phases.push(p);
    }
    let (mut flats, mut ceilings) = (Vec::new(), Vec::new());
    for round in 1..=args.rounds {
        // Alternate, so drift in the machine's load hits both alike.
        let p = measure(
            format!("flat out #{round}"),
            &daemon,
            &reader,
            &mut emitter,
            args.flat_events,
            None,
        )
        .await?;
        print_phase(&p);
        flats.push(p.events_per_s);
        phases.push(p);
        let c = ceiling(
            ceiling_bus.address(),
            &mut ceiling_emitter,
            args.flat_events,
            round,
        )
        .await?;
        print_phase(&c);
        ceilings.push(c.events_per_s);
        phases.push(c);
    }
    let usage = proc_usage(daemon.process.0.id())?;
    reader.finish()?;
    drop(daemon);
    if let Some(keep) = &args.keep_audit {
        std::fs::copy(state.join("audit.sqlite"), keep)?;
        println!("audit database kept in {}", keep.display());
    }

    let (flat, ceil) = (median(flats), median(ceilings));
    println!(
        "flat out / bus ceiling (medians of {}): {flat:.0} / {ceil:.0} = {:.2}  (goal ≥ 0.50)",
        args.rounds,
        flat / ceil
    );
    // After the warm-up, every event is the fleet's normal traffic (a unit failing now and then,
    // new units appearing): what share the detector flags.
    let (flagged, judged) = phases
        .iter()
        .skip(1)
        .filter_map(|p| Some((p.flagged?, p.committed)))
        .fold((0, 0), |(f, c), (pf, pc)| (f + pf, c + pc));
    let flagged_share = flagged as f64 / judged.max(1) as f64;
    println!(
        "flagged after the warm-up: {flagged} of {judged} events ({:.3}%)  (goal ≤ 0.1%)",
        flagged_share * 100.0
    );
    if let Some(p) = phases.iter().find(|p| p.name == "rate 1000/s") {
        println!(
            "p99 at 1,000 events/s: {} ms  (goal ≤ 50 ms)",
            p.p99_ms.map(|v| format!("{v:.1}")).unwrap_or_default()
        );
    }
    println!(
        "daemon peak RSS {:.0} MiB; latency = emission → committed record seen by a 1 ms poller",
        usage.hwm_kib as f64 / 1024.0
    );
    if let Some(path) = &args.json {
        std::fs::write(
            path,
            serde_json::to_string_pretty(&serde_json::json!({
                "phases": phases,
                "flat_over_ceiling": flat / ceil,
                "flagged_after_warmup": flagged_share,
                "peak_rss_mib": usage.hwm_kib as f64 / 1024.0,
            }))?,
        )?;
    }
    Ok(())
}
