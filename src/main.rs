use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use anomalyd::config::{Config, GpuSelection, Overrides};
use anomalyd::daemon::DaemonError;
use anomalyd::detect::DetectError;
use anomalyd::embed::EmbedError;
use anomalyd::offline::{self, Format};
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
    /// The all-MiniLM-L6-v2 model directory (overrides embedder.model_dir)
    #[arg(long, global = true, value_name = "DIR")]
    model: Option<PathBuf>,
    /// Validate the configuration and exit: 0 when valid, 78 (EX_CONFIG) when not
    #[arg(long)]
    check_config: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Print the anomalyd(8) man page (roff); with DIR, write it and one page per subcommand
    /// there (scripts/install and the package install them)
    #[command(hide = true)]
    Man { dir: Option<PathBuf> },
    /// Run a self-contained demonstration: a private bus, the daemon on it, and a replay of
    /// systemd, NetworkManager and login1 signals with injected faults
    Demo(anomalyd::demo::DemoArgs),
    /// Score a log file line by line as the daemon would have (each line against the baseline and
    /// the earlier lines only); write JSON lines {"line", "score", "anomaly", "alert", "text",
    /// "threshold", "incident", "repeat", "variable_slots"}
    ScoreFile {
        /// The file to score
        file: PathBuf,
        /// plain: each line is a log message (a syslog prefix and volatile values taken out);
        /// canonical: a canonical event text, taken as it is; bgl: a Loghub BGL line (label and
        /// per-line ids left out); journal-json: `journalctl -o json`
        #[arg(long, default_value = "plain")]
        format: Format,
        /// Known-normal history, learned before the file (same format)
        #[arg(long, value_name = "FILE")]
        baseline: Option<PathBuf>,
        /// Where the JSON lines go [default: stdout]
        #[arg(long, value_name = "FILE.jsonl")]
        out: Option<PathBuf>,
    },
    /// Manage the baseline (the history new events are compared with)
    #[command(subcommand)]
    Baseline(BaselineCommand),
    /// Embed texts read from stdin, one per line; write JSON lines {"text": ..., "embedding": [...]}
    Embed {
        /// Where to embed: cpu; auto (a GPU that passes its warm-up, else the CPU, saying why);
        /// cuda (a GPU, or fail saying why)
        #[arg(long, default_value = "auto", value_name = "auto|cpu|cuda")]
        device: Device,
    },
    /// Embedding throughput: the texts of FILE (one per line), at each batch size for a while;
    /// one JSON line per batch size
    BenchEmbed {
        file: PathBuf,
        /// Batch sizes, comma-separated
        #[arg(long, value_delimiter = ',', default_value = "64,256,1024")]
        batches: Vec<usize>,
        /// Seconds per batch size (after one warm-up pass)
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        #[arg(long, default_value = "auto", value_name = "auto|cpu|cuda")]
        device: Device,
    },
    /// Compile every GPU kernel (kernels/*.cu) through the daemon's own NVRTC path to CUBIN for
    /// the given architectures; needs libnvrtc, not a GPU. Any warning or error fails.
    Kernels {
        /// Target architecture, repeatable
        #[arg(long = "arch", value_name = "sm_NN", default_values_t = ["sm_80".to_owned(), "sm_90".to_owned()])]
        arch: Vec<String>,
        /// Write each CUBIN here as NAME-ARCH.cubin
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Compile this file (after the common helpers) instead of the built-in kernels
        #[arg(long, value_name = "FILE.cu")]
        source: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum BaselineCommand {
    /// Add known-normal history to the baseline of the state directory (the daemon must be
    /// stopped), recorded in the audit chain as one import record (file digest, counts)
    Import {
        /// The history: one event per line
        file: PathBuf,
        /// canonical: each line is a canonical event text (as `SELECT text FROM records` gives);
        /// plain: each line a log message, scrubbed; bgl: Loghub BGL (lines labelled anomalous
        /// are left out); journal-json: `journalctl -o json` output
        #[arg(long, default_value = "canonical")]
        format: Format,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Device {
    Auto,
    Cpu,
    Cuda,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let overrides = Overrides {
        bus: cli.bus.clone(),
        state_dir: cli.state_dir.clone(),
        log: cli.log.clone(),
        model: cli.model.clone(),
    };
    if let Some(Command::Man { dir }) = &cli.command {
        use clap::CommandFactory;
        let written = match dir {
            Some(dir) => anomalyd::manpages::write_all(Cli::command(), "8", dir).map(|_| ()),
            None => anomalyd::manpages::print(Cli::command(), "8"),
        };
        return match written {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("anomalyd: writing the man pages: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(Command::Demo(args)) = cli.command {
        return report(anomalyd::demo::run(
            args,
            cli.config.as_deref(),
            cli.state_dir.clone(),
            cli.model.clone(),
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
    if let Some(Command::Embed { device }) = cli.command {
        return report(embed_stdin(&on_device(config, device)));
    }
    if let Some(Command::BenchEmbed {
        file,
        batches,
        seconds,
        device,
    }) = cli.command
    {
        return report(bench_embed(
            &on_device(config, device),
            &file,
            &batches,
            seconds,
        ));
    }
    if let Some(Command::Kernels { arch, out, source }) = cli.command {
        return report(compile_kernels(&arch, out.as_deref(), source.as_deref()));
    }
    if let Some(Command::ScoreFile {
        file,
        format,
        baseline,
        out,
    }) = cli.command
    {
        return report(score_file(
            &config,
            &file,
            format,
            baseline.as_deref(),
            out.as_deref(),
        ));
    }
    if let Some(Command::Baseline(BaselineCommand::Import { file, format })) = cli.command {
        return report(import_baseline(&config, &file, format));
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

/// `anomalyd score-file`.
fn score_file(
    config: &Config,
    file: &std::path::Path,
    format: Format,
    baseline: Option<&std::path::Path>,
    out: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    use std::io::Write;
    let mut embedder = anomalyd::embed::build(config)?.embedder;
    eprintln!(
        "anomalyd score-file: {}{}; {} on {}",
        file.display(),
        baseline.map_or(String::new(), |b| format!(
            " after the baseline {}",
            b.display()
        )),
        embedder.model_id(),
        embedder.backend()
    );
    let sink: Box<dyn Write> = match out {
        Some(path) => Box::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut sink = std::io::BufWriter::new(sink);
    let mut bars: Vec<(&'static str, offline::Progress)> = Vec::new();
    let summary = offline::score_file(
        config,
        embedder.as_mut(),
        file,
        format,
        baseline,
        |s, text| {
            let mut line = serde_json::json!({
                "line": s.line,
                "score": s.score,
                "anomaly": s.anomaly,
                "alert": s.alerts(),
                "text": text,
            });
            if let Some(t) = s.threshold {
                line["threshold"] = serde_json::json!(anomalyd::metrics::decimal_f64(t));
            }
            if let Some((first, repeat)) = s.incident {
                line["incident"] = serde_json::json!(first);
                line["repeat"] = serde_json::json!(repeat);
            }
            if let Some(p) = &s.variable_slots {
                line["variable_slots"] = serde_json::json!(p);
            }
            serde_json::to_writer(&mut sink, &line)?;
            sink.write_all(b"\n")
        },
        |what, done, total| progress_of(&mut bars, what).update_maybe(done, total),
    )?;
    sink.flush()?;
    eprintln!(
        "anomalyd score-file: {} baseline lines, then {} lines; {} of {} lines flagged in {} incidents; threshold at the end {:.4}",
        summary.baseline_lines, summary.lines, summary.flagged, summary.lines, summary.alerts, summary.threshold
    );
    Ok(())
}

/// The progress bar for `what`, a new one when the work moved on to another stage.
fn progress_of<'a>(
    bars: &'a mut Vec<(&'static str, offline::Progress)>,
    what: &'static str,
) -> &'a mut offline::Progress {
    if bars.last().is_none_or(|(w, _)| *w != what) {
        bars.push((what, offline::Progress::new(what)));
    }
    &mut bars.last_mut().expect("just pushed").1
}

/// `anomalyd baseline import`.
fn import_baseline(config: &Config, file: &std::path::Path, format: Format) -> anyhow::Result<()> {
    let mut embedder = anomalyd::embed::build(config)?.embedder;
    let mut bars: Vec<(&'static str, offline::Progress)> = Vec::new();
    let summary =
        offline::import_baseline(config, file, format, embedder.as_mut(), |what, d, t| {
            progress_of(&mut bars, what).update_maybe(d, t)
        })?;
    println!(
        "imported {} events ({} distinct, {} new to the baseline) from {} lines of {}; {} skipped",
        summary.events,
        summary.distinct,
        summary.new_texts,
        summary.lines,
        file.display(),
        summary.skipped
    );
    println!(
        "recorded as seq {} (file sha256 {}) in {}",
        summary.seq,
        summary.file_sha256,
        config.audit_db_path().display()
    );
    Ok(())
}

/// `config` with `--device` applied.
fn on_device(mut config: Config, device: Device) -> Config {
    match device {
        Device::Auto => {}
        Device::Cpu => config.gpu.device = GpuSelection::Off,
        // A GPU or an error: the one named in the configuration, else the first.
        Device::Cuda if config.gpu.named_devices().is_none() => {
            config.gpu.device = GpuSelection::Device(0)
        }
        Device::Cuda => {}
    }
    config
}

/// `anomalyd bench-embed`.
fn bench_embed(
    config: &Config,
    file: &std::path::Path,
    batches: &[usize],
    seconds: f64,
) -> anyhow::Result<()> {
    let texts: Vec<String> = std::fs::read_to_string(file)
        .with_context(|| format!("reading {}", file.display()))?
        .lines()
        .map(str::to_owned)
        .collect();
    anyhow::ensure!(!texts.is_empty(), "{} has no lines", file.display());
    let mut embedder = anomalyd::embed::build(config)?.embedder;
    let backend = embedder.backend();
    eprintln!("anomalyd bench-embed: {} texts on {backend}", texts.len());
    for &batch in batches {
        anyhow::ensure!(batch > 0, "a batch size must be at least 1");
        // The pass cycles through the file so every batch is full.
        let cycle: Vec<&str> = texts
            .iter()
            .cycle()
            .take(batch.max(texts.len()))
            .map(String::as_str)
            .collect();
        embedder.embed(&cycle[..batch])?; // warm-up: allocations, autotuning
        let (mut done, mut at) = (0usize, 0usize);
        let start = std::time::Instant::now();
        while start.elapsed().as_secs_f64() < seconds {
            if at + batch > cycle.len() {
                at = 0;
            }
            embedder.embed(&cycle[at..at + batch])?;
            at += batch;
            done += batch;
        }
        let rate = done as f64 / start.elapsed().as_secs_f64();
        println!(
            "{}",
            serde_json::json!({"backend": backend, "batch": batch, "texts": done, "texts_per_s": rate})
        );
    }
    Ok(())
}

/// `anomalyd kernels`.
#[cfg(feature = "cuda")]
fn compile_kernels(
    architectures: &[String],
    out: Option<&std::path::Path>,
    source: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    use anomalyd::embed::cuda::kernels;
    let (major, minor) = kernels::nvrtc_version()?;
    println!("NVRTC {major}.{minor}");
    let sources: Vec<(String, String, Vec<&str>)> = match source {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let name = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            vec![(name.clone(), kernels::full_source(&name, &text), Vec::new())]
        }
        None => kernels::KERNELS
            .iter()
            .map(|k| (k.file.to_owned(), k.full_source(), k.entry_points.to_vec()))
            .collect(),
    };
    if let Some(dir) = out {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    for arch in architectures {
        for (file, text, entry_points) in &sources {
            let cubin = kernels::compile_cubin(file, text, arch)?;
            if let Some(missing) = entry_points
                .iter()
                .find(|e| !cubin.windows(e.len()).any(|w| w == e.as_bytes()))
            {
                anyhow::bail!("{file} for {arch}: the CUBIN has no entry point {missing}");
            }
            println!("kernels/{file} {arch}: {} bytes of CUBIN", cubin.len());
            if let Some(dir) = out {
                let path = dir.join(format!("{}-{arch}.cubin", file.trim_end_matches(".cu")));
                std::fs::write(&path, &cubin)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
        }
    }
    Ok(())
}

#[cfg(not(feature = "cuda"))]
fn compile_kernels(
    _architectures: &[String],
    _out: Option<&std::path::Path>,
    _source: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    anyhow::bail!("this anomalyd was built without the cuda feature: no kernels to compile")
}

/// `anomalyd embed`: stdin lines in batches of `embedder.batch_size`, JSON lines out.
fn embed_stdin(config: &Config) -> anyhow::Result<()> {
    use std::io::{BufRead, Write};
    let selection = anomalyd::embed::build(config)?;
    if let Some(why) = &selection.why_cpu {
        eprintln!("anomalyd embed: no GPU used: embedding on the CPU: {why}");
    }
    let mut embedder = selection.embedder;
    eprintln!(
        "anomalyd embed: {} on {}",
        embedder.model_id(),
        embedder.backend()
    );
    let stdin = std::io::stdin().lock();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut lines = stdin.lines();
    let mut batch: Vec<String> = Vec::with_capacity(config.embedder.batch_size);
    let mut line_no = 0u64;
    loop {
        batch.clear();
        for line in lines.by_ref() {
            line_no += 1;
            batch.push(line.with_context(|| format!("reading stdin line {line_no}"))?);
            if batch.len() == config.embedder.batch_size {
                break;
            }
        }
        if batch.is_empty() {
            break;
        }
        let texts: Vec<&str> = batch.iter().map(String::as_str).collect();
        let vectors = embedder.embed(&texts)?;
        for (i, text) in texts.iter().enumerate() {
            serde_json::to_writer(
                &mut out,
                &serde_json::json!({"text": text, "embedding": vectors.row(i)}),
            )?;
            out.write_all(b"\n")?;
        }
        out.flush()?;
    }
    Ok(())
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
            let message = anomalyd::logging::error_chain(e.as_ref());
            tracing::error!(error = message, "anomalyd failed");
            eprintln!("anomalyd: {message}");
            // A missing model or an impossible device is fixed by the operator, not by a restart:
            // EX_CONFIG, which the unit's RestartPreventExitStatus= names. The subcommands share it.
            let setup = e.chain().any(|cause| {
                cause
                    .downcast_ref::<DaemonError>()
                    .is_some_and(DaemonError::is_setup_error)
                    || cause
                        .downcast_ref::<EmbedError>()
                        .is_some_and(EmbedError::is_setup_error)
                    || cause
                        .downcast_ref::<DetectError>()
                        .is_some_and(DetectError::is_setup_error)
                    || cause
                        .downcast_ref::<offline::OfflineError>()
                        .is_some_and(offline::OfflineError::is_setup_error)
            });
            if setup {
                ExitCode::from(EXIT_CONFIG as u8)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
