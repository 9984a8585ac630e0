//! anomalyctl: the operator's client for a running anomalyd, in the manner of `systemctl` and
//! `journalctl`: tables for people, `--json` for machines, exit codes scripts can rely on.

mod time;

use std::collections::HashMap;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};
use zbus::zvariant::Value;

use anomalyd::api::{Page, RecordRow, INTERFACE, MAX_PAGE, OBJECT_PATH};
use anomalyd::audit::{Checkpoint, CHECKPOINT_MESSAGE_ID};
use anomalyd::config::{BusTarget, DEFAULT_BUS_NAME};

#[derive(Parser)]
#[command(
    name = "anomalyctl",
    version,
    about = "Query and steer a running anomalyd over D-Bus",
    after_help = "Exit status: 0 success; 1 the audit chain is broken (verify); 2 any other \
                  failure; 3 the daemon cannot be reached; 4 access denied; 5 no such record."
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
    /// Talk to the daemon on the system bus (the default)
    #[arg(long, global = true, conflicts_with_all = ["session", "address"])]
    system: bool,
    /// Talk to the daemon on the session bus
    #[arg(long, global = true, conflicts_with = "address")]
    session: bool,
    /// Talk to the daemon on the bus at this D-Bus address
    #[arg(long, global = true, value_name = "ADDRESS")]
    address: Option<String>,
    /// The daemon's bus name
    #[arg(long, global = true, default_value = DEFAULT_BUS_NAME)]
    name: String,
    /// Print JSON (one object per line for listings) instead of tables
    #[arg(long, global = true)]
    json: bool,
    /// Show timestamps in UTC instead of local time, and read --since dates as UTC
    #[arg(long, global = true)]
    utc: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The daemon at a glance: backend, index, counters, threshold, head, recent anomalies
    Status,
    /// Print the daemon's counters and facts
    Stats,
    /// List anomalies, newest last; --follow keeps printing them as they are detected
    Anomalies {
        /// Only those observed since: an age (30s, 15m, 1h, 2d), a date-time, or @USEC
        #[arg(long, value_name = "WHEN")]
        since: Option<String>,
        /// Show the last N (0 = all that match)
        #[arg(short = 'n', long = "lines", default_value_t = 20, value_name = "N")]
        lines: usize,
        /// Keep printing anomalies as they are detected, until interrupted
        #[arg(short, long)]
        follow: bool,
    },
    /// List recorded events (every record kind), newest last
    Events {
        /// Only those observed since: an age (30s, 15m, 1h, 2d), a date-time, or @USEC
        #[arg(long, value_name = "WHEN")]
        since: Option<String>,
        /// Show the last N (0 = all that match)
        #[arg(short = 'n', long = "lines", default_value_t = 20, value_name = "N")]
        lines: usize,
        /// Only this verdict: normal, anomaly, warmup, suppressed, none
        #[arg(long)]
        verdict: Option<String>,
        /// Only this source: systemd, networkmanager, login1, udisks2, custom, anomalyd
        #[arg(long)]
        source: Option<String>,
        /// Only this record kind: event, benign, import, gap, start, stop, genesis
        #[arg(long)]
        kind: Option<String>,
        /// Only texts containing this string
        #[arg(long, value_name = "TEXT")]
        grep: Option<String>,
        /// Only the anomalies of the incident record SEQ opened (from `incidents`)
        #[arg(long, value_name = "SEQ")]
        incident: Option<u64>,
    },
    /// List incidents, newest first: the anomaly that opened each one (and alerted), how many
    /// repeats followed and when the last one was
    Incidents {
        /// Only those opened since: an age (30s, 15m, 1h, 2d), a date-time, or @USEC
        #[arg(long, value_name = "WHEN")]
        since: Option<String>,
        /// Show at most N (1 to 1000)
        #[arg(short = 'n', long = "lines", default_value_t = 20, value_name = "N")]
        lines: usize,
    },
    /// Every field of one record: text, verdict, score, neighbours, hashes
    Show { seq: u64 },
    /// Print anomalies as they are detected, until interrupted (anomalies --follow -n 0 without
    /// the backlog)
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
        /// Also hold the chain against the checkpoints collected centrally in this journal
        /// directory (systemd-journal-remote's output): only the entries of the machine that
        /// the chain's genesis record names (`_MACHINE_ID`), and only those journald attributes
        /// to the service; with --db; repeatable
        #[arg(long, value_name = "DIR", requires = "db")]
        journal_dir: Vec<std::path::PathBuf>,
        /// As --journal-dir, for one journal file; with --db; repeatable
        #[arg(long, value_name = "FILE", requires = "db")]
        journal_file: Vec<std::path::PathBuf>,
        /// The host the database is from (its /etc/machine-id), for --journal-dir/--journal-file:
        /// its entries are the ones read, and the chain's genesis must name it
        /// [default: the machine the genesis names]
        #[arg(long, value_name = "ID")]
        machine_id: Option<String>,
    },
    /// Why an event got its verdict: its score against the threshold, and the nearest baseline
    /// events with their distances and counts
    Explain {
        /// The event's seq (from `anomalies` or the log)
        seq: u64,
    },
    /// How a text would be judged now, without recording it (a dry run)
    Score {
        /// A canonical event text, e.g. "systemd unit nginx.service ActiveState=failed"
        text: String,
    },
    /// Mark an event benign: its text joins the baseline, so it stops alerting; recorded in the
    /// audit chain with the note and your uid (root and group anomalyd-admin)
    Benign {
        seq: u64,
        /// Why it is benign (kept in the chain)
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Train the baseline index again now, in the background (root and group anomalyd-admin)
    Retrain,
    /// Submit each line of FILE as an event (root and group anomalyd-admin)
    Replay {
        file: std::path::PathBuf,
        /// The source the lines are submitted as
        #[arg(long, default_value = "custom")]
        source: String,
        /// Events per second (0 = as fast as the daemon takes them)
        #[arg(long, default_value_t = 100.0)]
        rate: f64,
    },
    /// Print the chain's head as SEQ:HEX, for `verify --expect-head` later
    Head {
        /// Read this database file instead of asking the daemon
        #[arg(long, value_name = "PATH")]
        db: Option<std::path::PathBuf>,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completions { shell: clap_complete::Shell },
    /// Print the anomalyctl(1) man page (roff); with DIR, write it and one page per subcommand
    /// there (scripts/install and the package install them)
    #[command(hide = true)]
    Man { dir: Option<std::path::PathBuf> },
}

/// Exit status of `verify` when the chain is broken.
const EXIT_BROKEN: u8 = 1;
/// Exit status when a command cannot do its work for any other reason (bad argument, unreadable
/// file, an error from the daemon).
const EXIT_ERROR: u8 = 2;
/// Exit status when the bus or the daemon cannot be reached.
const EXIT_UNREACHABLE: u8 = 3;
/// Exit status when the bus policy or the daemon refused the call.
const EXIT_DENIED: u8 = 4;
/// Exit status when the record asked for does not exist.
const EXIT_NOT_FOUND: u8 = 5;

/// The bus could not be reached at all; its exit status is [`EXIT_UNREACHABLE`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Unreachable(String);

/// The exit status an error stands for.
fn exit_status_of(error: &anyhow::Error) -> u8 {
    for cause in error.chain() {
        if cause.is::<Unreachable>() {
            return EXIT_UNREACHABLE;
        }
        if let Some(zbus::Error::MethodError(name, _, _)) = cause.downcast_ref::<zbus::Error>() {
            match name.as_str() {
                "org.anomalyd.Error.AccessDenied" | "org.freedesktop.DBus.Error.AccessDenied" => {
                    return EXIT_DENIED
                }
                "org.anomalyd.Error.NotFound" => return EXIT_NOT_FOUND,
                "org.freedesktop.DBus.Error.ServiceUnknown"
                | "org.freedesktop.DBus.Error.NameHasNoOwner"
                | "org.freedesktop.DBus.Error.NoReply"
                | "org.freedesktop.DBus.Error.Disconnected" => return EXIT_UNREACHABLE,
                _ => {}
            }
        }
    }
    EXIT_ERROR
}

fn read_checkpoints(
    files: &[std::path::PathBuf],
    journal: bool,
) -> anyhow::Result<Vec<Checkpoint>> {
    use anomalyd::audit::checkpoint::{
        parse_checkpoints_trusted, read_checkpoint_file_trusted, JournalTrust, SERVICE_UNIT,
    };
    // Journal entries count only when journald attributes them to the service (its unit, and
    // root's or the service user's uid): anyone can write an entry with the checkpoint's fields.
    let trust = JournalTrust::service();
    let (mut all, mut untrusted) = (Vec::new(), 0usize);
    for file in files {
        let parsed = if file.as_os_str() == "-" {
            let text = std::io::read_to_string(std::io::stdin())
                .context("reading checkpoints from stdin")?;
            parse_checkpoints_trusted(&text, &trust).map_err(|e| anyhow::anyhow!("stdin: {e}"))?
        } else {
            read_checkpoint_file_trusted(file, &trust).map_err(anyhow::Error::msg)?
        };
        if parsed.torn {
            eprintln!(
                "anomalyctl: {}: ignored its unfinished last line (a write cut short)",
                file.display()
            );
        }
        untrusted += parsed.untrusted;
        all.extend(parsed.checkpoints);
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
        let parsed = parse_checkpoints_trusted(&text, &trust)
            .map_err(|e| anyhow::anyhow!("journal: {e}"))?;
        untrusted += parsed.untrusted;
        all.extend(parsed.checkpoints);
    }
    if untrusted > 0 {
        eprintln!(
            "anomalyctl: ignored {untrusted} checkpoint entries that journald does not attribute to {SERVICE_UNIT} (_SYSTEMD_UNIT and _UID)"
        );
    }
    Ok(all)
}

/// The checkpoints of `db`'s machine in central journals (`--journal-dir`, `--journal-file`),
/// believed only when journald attributes them to the service. Finding none is an error: the
/// check asked for did not happen (a wrong directory, or a host that never uploaded).
fn read_central_checkpoints(
    db: &std::path::Path,
    machine_id: Option<&str>,
    dirs: &[std::path::PathBuf],
    files: &[std::path::PathBuf],
) -> anyhow::Result<Vec<Checkpoint>> {
    use anomalyd::audit::checkpoint::{parse_checkpoints_trusted, JournalTrust, SERVICE_UNIT};
    let journals: Vec<(&str, &std::path::PathBuf)> = dirs
        .iter()
        .map(|d| ("--directory", d))
        .chain(files.iter().map(|f| ("--file", f)))
        .collect();
    if journals.is_empty() {
        return Ok(Vec::new());
    }
    let genesis = anomalyd::audit::read_machine_id(db)?;
    // The machine is the operator's to name: the genesis record is part of what is checked, and
    // a rewritten one could name a machine without checkpoints.
    let machine = match (machine_id, genesis) {
        (Some(given), Some(recorded)) if given != recorded => anyhow::bail!(
            "{}: the chain's genesis names machine {recorded}, not {given} (--machine-id): a rewritten genesis, or another host's database",
            db.display()
        ),
        (Some(given), _) => given.to_owned(),
        (None, Some(recorded)) => {
            eprintln!(
                "anomalyctl: checking against machine {recorded}, as the chain's genesis names it; --machine-id holds it against the host you mean"
            );
            recorded
        }
        (None, None) => anyhow::bail!(
            "{}: the genesis record names no machine_id; say which host it is with --machine-id",
            db.display()
        ),
    };
    // Believed by unit alone: the host's service user has a uid of its own, and only root or
    // the service could log from the service's cgroup there. Taking the uids from the chain
    // would let whoever rewrote it choose them.
    let trust = JournalTrust::service_anywhere();
    let mut all = Vec::new();
    for (flag, journal) in journals {
        let out = std::process::Command::new("journalctl")
            .args(["--no-pager", "-o", "json"])
            .arg(format!("{flag}={}", journal.display()))
            .arg(format!("MESSAGE_ID={CHECKPOINT_MESSAGE_ID}"))
            .arg(format!("_MACHINE_ID={machine}"))
            .output()
            .context("running journalctl")?;
        anyhow::ensure!(
            out.status.success(),
            "journalctl {flag}={}: {}",
            journal.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        let parsed = parse_checkpoints_trusted(&String::from_utf8_lossy(&out.stdout), &trust)
            .map_err(|e| anyhow::anyhow!("{}: {e}", journal.display()))?;
        if parsed.untrusted > 0 {
            eprintln!(
                "anomalyctl: {}: ignored {} checkpoint entries of machine {machine} that journald does not attribute to {SERVICE_UNIT} (_SYSTEMD_UNIT and _UID)",
                journal.display(),
                parsed.untrusted
            );
        }
        anyhow::ensure!(
            !parsed.checkpoints.is_empty(),
            "{}: no checkpoint of machine {machine} (the genesis record's machine_id) that journald attributes to {SERVICE_UNIT}",
            journal.display()
        );
        all.extend(parsed.checkpoints);
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
            return std::process::ExitCode::from(EXIT_ERROR);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => std::process::ExitCode::from(code),
        Err(e) => {
            eprintln!("anomalyctl: {}", anomalyd::logging::error_chain(e.as_ref()));
            std::process::ExitCode::from(exit_status_of(&e))
        }
    }
}

/// The daemon's object on the bus, with what commands need to print and call.
struct Daemon {
    proxy: zbus::Proxy<'static>,
    name: String,
    target: BusTarget,
    json: bool,
    utc: bool,
}

impl Daemon {
    async fn call<B, R>(&self, method: &str, body: &B) -> anyhow::Result<R>
    where
        B: serde::Serialize + zbus::zvariant::DynamicType,
        R: for<'d> zbus::zvariant::DynamicDeserialize<'d>,
    {
        self.proxy
            .call(method, body)
            .await
            .with_context(|| format!("{method} on {} ({} bus)", self.name, self.target))
    }

    /// One page of `ListEvents`.
    async fn page(
        &self,
        since_usec: u64,
        limit: usize,
        filter: &HashMap<&str, Value<'_>>,
    ) -> anyhow::Result<Page> {
        self.call("ListEvents", &(since_usec, limit as i32, filter))
            .await
    }

    /// The last `lines` records matching `filter` (all of them when 0), oldest first.
    async fn last_records(
        &self,
        since_usec: u64,
        lines: usize,
        mut filter: HashMap<&'static str, Value<'static>>,
    ) -> anyhow::Result<Vec<RecordRow>> {
        let mut rows = Vec::new();
        if lines == 0 {
            loop {
                let Page { rows: page, cursor } =
                    self.page(since_usec, MAX_PAGE as usize, &filter).await?;
                rows.extend(page);
                if cursor == 0 {
                    return Ok(rows);
                }
                filter.insert("after_seq", Value::U64(cursor));
            }
        }
        filter.insert("newest_first", Value::Bool(true));
        while rows.len() < lines {
            let want = (lines - rows.len()).min(MAX_PAGE as usize);
            let Page { rows: page, cursor } = self.page(since_usec, want, &filter).await?;
            rows.extend(page);
            if cursor == 0 {
                break;
            }
            filter.insert("before_seq", Value::U64(cursor));
        }
        rows.reverse();
        Ok(rows)
    }

    fn print_row(&self, row: &RecordRow) {
        let RecordRow {
            seq,
            usec,
            kind,
            source,
            verdict,
            score,
            text,
        } = row;
        if self.json {
            println!(
                "{}",
                serde_json::json!({"seq": seq, "usec": usec,
                    "time": time::format_usec(*usec, self.utc), "kind": kind, "source": source,
                    "verdict": verdict, "score": score.is_finite().then_some(*score), "text": text})
            );
        } else {
            let score = if score.is_finite() {
                format!("{score:7.4}")
            } else {
                format!("{:>7}", "-")
            };
            let what = if kind == "event" { verdict } else { kind };
            println!(
                "{}  #{seq:<7} {what:<10} {score}  {text}",
                time::format_usec(*usec, self.utc)
            );
        }
    }
}

fn since_usec(since: Option<&str>, utc: bool) -> anyhow::Result<u64> {
    since.map_or(Ok(0), |s| {
        time::parse_since(s, time::now_usec(), utc).map_err(|e| anyhow::anyhow!("--since {e}"))
    })
}

async fn run(cli: Cli) -> anyhow::Result<u8> {
    // Offline commands need no bus.
    match &cli.command {
        Command::Verify {
            db: Some(db),
            expect_head,
            checkpoints,
            journal,
            journal_dir,
            journal_file,
            machine_id,
        } => {
            let mut expected = expect_head.clone();
            expected.extend(read_checkpoints(checkpoints, *journal)?);
            expected.extend(read_central_checkpoints(
                db,
                machine_id.as_deref(),
                journal_dir,
                journal_file,
            )?);
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
        Command::Completions { shell } => {
            clap_complete::generate(
                *shell,
                &mut Cli::command(),
                "anomalyctl",
                &mut std::io::stdout(),
            );
            return Ok(0);
        }
        Command::Man { dir } => {
            match dir {
                Some(dir) => anomalyd::manpages::write_all(Cli::command(), "1", dir).map(|_| ()),
                None => anomalyd::manpages::print(Cli::command(), "1"),
            }
            .context("writing the man pages")?;
            return Ok(0);
        }
        _ => {}
    }
    let bus = if cli.session {
        "session".to_owned()
    } else if let Some(address) = &cli.address {
        address.clone()
    } else if cli.system {
        "system".to_owned()
    } else {
        cli.bus.clone()
    };
    let target = BusTarget::parse(&bus).map_err(|e| anyhow::anyhow!("bus {bus}: {e}"))?;
    let conn = anomalyd::bus::connect(&target)
        .await
        .map_err(|e| Unreachable(format!("cannot connect to the {target} bus: {e}")))?;
    let proxy = zbus::Proxy::new(&conn, cli.name.clone(), OBJECT_PATH, INTERFACE).await?;
    let daemon = Daemon {
        proxy,
        name: cli.name.clone(),
        target,
        json: cli.json,
        utc: cli.utc,
    };
    commands::run(&daemon, cli.command).await
}

mod commands;
