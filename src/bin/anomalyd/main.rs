//! The `anomalyd` command: its flags and subcommands, each run where it lives in the library;
//! `demo` is the one part of the binary beyond that (a client of the daemon).

mod demo;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use anomalyd::config::Overrides;
use anomalyd::embed::tools::{self, Device};
use anomalyd::offline::{self, Format};

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
    Demo(demo::DemoArgs),
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

fn main() -> ExitCode {
    // First, before anything is opened: OpenBLAS's kernels for this CPU, where its own detection
    // fell back to generic ones (the embedder's and FAISS's products).
    anomalyd::embed::blas::exec_with_better_core("anomalyd");
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let message = anomalyd::logging::error_chain(e.as_ref());
            tracing::error!(error = message, "anomalyd failed");
            eprintln!("anomalyd: {message}");
            // The library's errors carry their exit status (78 for what the operator must fix);
            // the demo's are its own.
            e.downcast_ref::<anomalyd::Error>()
                .map_or(ExitCode::FAILURE, ExitCode::from)
        }
    }
}

/// `result` with its error as the library's [`anomalyd::Error`], which knows its exit status.
fn lib<T, E: Into<anomalyd::Error>>(result: Result<T, E>) -> anyhow::Result<T> {
    result.map_err(|e| anyhow::Error::new(e.into()))
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let overrides = Overrides {
        bus: cli.bus,
        state_dir: cli.state_dir.clone(),
        log: cli.log,
        model: cli.model.clone(),
    };
    let config = || anomalyd::load_config(cli.config.as_deref(), &overrides);
    match cli.command {
        // The man pages and the demo (which writes its own configuration) come first.
        Some(Command::Man { dir }) => {
            use clap::CommandFactory;
            match dir {
                Some(dir) => anomalyd::manpages::write_all(Cli::command(), "8", &dir).map(|_| ()),
                None => anomalyd::manpages::print(Cli::command(), "8"),
            }
            .map_err(|e| anyhow::Error::new(anomalyd::Error::ManPages(e)))
        }
        Some(Command::Demo(args)) => {
            demo::run(args, cli.config.as_deref(), cli.state_dir, cli.model)
        }
        _ if cli.check_config => {
            println!("{}: configuration valid", lib(config())?.origin);
            Ok(())
        }
        None => {
            let config = lib(config())?;
            lib(anomalyd::logging::init(
                config.daemon.log,
                &config.daemon.log_level,
            ))?;
            lib(anomalyd::daemon::serve(config))?;
            Ok(())
        }
        Some(Command::Embed { device }) => lib(tools::embed_stdin(&device.apply(lib(config())?))),
        Some(Command::BenchEmbed {
            file,
            batches,
            seconds,
            device,
        }) => lib(tools::bench_embed(
            &device.apply(lib(config())?),
            &file,
            &batches,
            seconds,
        )),
        Some(Command::Kernels { arch, out, source }) => lib(tools::compile_kernels(
            &arch,
            out.as_deref(),
            source.as_deref(),
        )),
        Some(Command::ScoreFile {
            file,
            format,
            baseline,
            out,
        }) => {
            lib(offline::score_file_command(
                &lib(config())?,
                &file,
                format,
                baseline.as_deref(),
                out.as_deref(),
            ))?;
            Ok(())
        }
        Some(Command::Baseline(BaselineCommand::Import { file, format })) => {
            lib(offline::import_command(&lib(config())?, &file, format))?;
            Ok(())
        }
    }
}
