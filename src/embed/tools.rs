//! The embedder as command-line tools: `anomalyd embed` (stdin lines to JSON vectors),
//! `anomalyd bench-embed` (throughput per batch size) and `anomalyd kernels` (the GPU kernels
//! compiled through the daemon's own NVRTC path).

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use crate::config::{Config, GpuSelection};

use super::EmbedError;

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error(transparent)]
    Embed(#[from] EmbedError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    InvalidArgument(String),
    #[cfg(feature = "cuda")]
    #[error(transparent)]
    Cuda(#[from] super::cuda::CudaError),
    #[error("{0}")]
    Kernel(String),
}

impl ToolError {
    /// Fixed by the operator (a missing model, an impossible device), not by running again.
    pub fn is_setup_error(&self) -> bool {
        match self {
            ToolError::Embed(e) => e.is_setup_error(),
            _ => false,
        }
    }
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ToolError {
    let what = what.into();
    move |source| ToolError::Io { what, source }
}

/// Where the tools embed (`--device`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Device {
    // Plain comments: a doc comment would become clap's help text for the value, and the flag's
    // own help already says what each does.
    // A GPU that passes its warm-up, else the CPU, saying why.
    Auto,
    Cpu,
    // A GPU, or fail saying why.
    Cuda,
}

impl Device {
    /// `config` with this choice applied.
    pub fn apply(self, mut config: Config) -> Config {
        match self {
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
}

/// `anomalyd embed`: stdin lines in batches of `embedder.batch_size`, JSON lines out.
pub fn embed_stdin(config: &Config) -> Result<(), ToolError> {
    let selection = super::build(config)?;
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
            batch.push(line.map_err(io(format!("reading stdin line {line_no}")))?);
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
            let line = serde_json::json!({"text": text, "embedding": vectors.row(i)});
            serde_json::to_writer(&mut out, &line)
                .map_err(std::io::Error::from)
                .and_then(|()| out.write_all(b"\n"))
                .map_err(io("writing stdout"))?;
        }
        out.flush().map_err(io("writing stdout"))?;
    }
    Ok(())
}

/// `anomalyd bench-embed`: the texts of `file` at each batch size for `seconds`, one JSON line
/// per batch size.
pub fn bench_embed(
    config: &Config,
    file: &Path,
    batches: &[usize],
    seconds: f64,
) -> Result<(), ToolError> {
    let texts: Vec<String> = std::fs::read_to_string(file)
        .map_err(io(format!("reading {}", file.display())))?
        .lines()
        .map(str::to_owned)
        .collect();
    if texts.is_empty() {
        return Err(ToolError::InvalidArgument(format!(
            "{} has no lines",
            file.display()
        )));
    }
    if batches.contains(&0) {
        return Err(ToolError::InvalidArgument(
            "a batch size must be at least 1".into(),
        ));
    }
    let mut embedder = super::build(config)?.embedder;
    let backend = embedder.backend();
    eprintln!("anomalyd bench-embed: {} texts on {backend}", texts.len());
    for &batch in batches {
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

/// `anomalyd kernels`: every kernel (or `source`, after the common helpers) compiled to CUBIN for
/// each architecture, checked for its entry points, and written to `out` when given.
#[cfg(feature = "cuda")]
pub fn compile_kernels(
    architectures: &[String],
    out: Option<&Path>,
    source: Option<&Path>,
) -> Result<(), ToolError> {
    use super::cuda::kernels;
    let (major, minor) = kernels::nvrtc_version()?;
    println!("NVRTC {major}.{minor}");
    let sources: Vec<(String, String, Vec<&str>)> = match source {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(io(format!("reading {}", path.display())))?;
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
        std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    }
    for arch in architectures {
        for (file, text, entry_points) in &sources {
            let cubin = kernels::compile_cubin(file, text, arch)?;
            if let Some(missing) = entry_points
                .iter()
                .find(|e| !cubin.windows(e.len()).any(|w| w == e.as_bytes()))
            {
                return Err(ToolError::Kernel(format!(
                    "{file} for {arch}: the CUBIN has no entry point {missing}"
                )));
            }
            println!("kernels/{file} {arch}: {} bytes of CUBIN", cubin.len());
            if let Some(dir) = out {
                let path: PathBuf =
                    dir.join(format!("{}-{arch}.cubin", file.trim_end_matches(".cu")));
                std::fs::write(&path, &cubin).map_err(io(format!("writing {}", path.display())))?;
            }
        }
    }
    Ok(())
}

#[cfg(not(feature = "cuda"))]
pub fn compile_kernels(
    _architectures: &[String],
    _out: Option<&Path>,
    _source: Option<&Path>,
) -> Result<(), ToolError> {
    Err(ToolError::Kernel(
        "this anomalyd was built without the cuda feature: no kernels to compile".into(),
    ))
}
