//! Text → unit vector. A tiny [`Embedder`] trait with one implementation per backend; the pipeline
//! owns exactly one embedder, on its own thread.
//!
//! - [`minilm`]: all-MiniLM-L6-v2 ([`tokenize`] → [`bert`] over a [`bert::Backend`] → pooling),
//!   with the weights and configs of [`model`]; [`cpu`] is the OpenBLAS backend.
//! - [`hashing`]: feature hashing, only when `embedder.kind = "hashing"` asks for it.
//! - [`cache`]: the LRU of vectors by canonical text, in front of whichever embedder runs.

mod attention;
pub mod bert;
pub mod bf16;
pub mod blas;
pub mod cache;
pub mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod fp32;
mod hashing;
pub mod minilm;
pub mod model;
mod spin_pool;
pub mod tokenize;
pub mod tools;

use std::path::PathBuf;

pub use cache::{EmbeddingCache, Lookups};
pub use hashing::HashingEmbedder;
pub use minilm::MiniLm;

use crate::config::{Config, EmbedderKind, GpuSelection, NumaBinding};
use crate::numa::{self, Binding, Scope};

#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("embedder health check failed: {0}")]
    Unhealthy(String),
    #[error(
        "model directory {}: {file} not found. Install {name} there with \
         `/usr/lib/anomalyd/fetch-model {dir}` (in a source checkout: `scripts/fetch-model {dir}`), \
         point embedder.model_dir or --model at a copy, or set embedder.kind = \"hashing\" for an \
         install without the model",
        dir.display(),
        name = model::MODEL_NAME,
        dir = dir.display()
    )]
    ModelMissing { dir: PathBuf, file: &'static str },
    #[error("{}: {reason}", path.display())]
    ModelInvalid { path: PathBuf, reason: String },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("{0}")]
    DeviceUnavailable(String),
    #[cfg(feature = "cuda")]
    #[error(transparent)]
    Cuda(#[from] cuda::CudaError),
}

impl EmbedError {
    /// Errors an operator fixes in the configuration or the install, not by restarting.
    pub fn is_setup_error(&self) -> bool {
        matches!(
            self,
            EmbedError::ModelMissing { .. }
                | EmbedError::ModelInvalid { .. }
                | EmbedError::DeviceUnavailable(_)
        )
    }
}

/// Row-major embeddings: `rows × dim` floats, each row L2-normalised.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    pub dim: usize,
    pub data: Vec<f32>,
}

impl Embeddings {
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    pub fn rows(&self) -> usize {
        self.data.len() / self.dim.max(1)
    }
}

pub trait Embedder: Send {
    /// Embeds a batch; row `i` belongs to `texts[i]`.
    fn embed(&mut self, texts: &[&str]) -> Result<Embeddings, EmbedError>;
    fn dim(&self) -> usize;
    /// Names the model and its version; recorded with every verdict.
    fn model_id(&self) -> String;
    /// Where it runs, for `Stats` and the logs ("cpu", "cuda:0 NVIDIA H200").
    fn backend(&self) -> String;

    /// Embeds a fixed text and checks the result is a finite unit vector of the right size.
    fn health(&mut self) -> Result<(), EmbedError> {
        let out = self
            .embed(&["anomalyd health check systemd unit anomalyd.service ActiveState=active"])?;
        if out.dim != self.dim() || out.rows() != 1 {
            return Err(EmbedError::Unhealthy(format!(
                "expected 1×{}, got {}×{}",
                self.dim(),
                out.rows(),
                out.dim
            )));
        }
        let norm: f32 = out.data.iter().map(|x| x * x).sum::<f32>().sqrt();
        if !norm.is_finite() || (norm - 1.0).abs() > 1e-3 {
            return Err(EmbedError::Unhealthy(format!(
                "health vector has norm {norm}, expected 1"
            )));
        }
        Ok(())
    }
}

/// Texts of several lengths and kinds a GPU must embed as the CPU does before it is used.
#[cfg(feature = "cuda")]
const WARM_UP_TEXTS: [&str; 6] = [
    "systemd unit nginx.service ActiveState=failed SubState=failed Result=exit-code",
    "NetworkManager device eth0 State=disconnected Reason=carrier-changed",
    "login1 session 42 new user=alice seat=seat0",
    "udisks2 drive /org/freedesktop/UDisks2/drives/Samsung_SSD_970 SmartFailing=true",
    "RAS KERNEL INFO instruction cache parity error corrected",
    "systemd job 1234 start postgresql.service result=done after 2.5s; dependency \
     network-online.target reached; unit file /lib/systemd/system/postgresql.service",
];

/// The least cosine a GPU's warm-up vector may have to the CPU's (fp16 products).
pub const MIN_WARM_UP_COSINE: f32 = 0.999;

/// The embedder, and where it runs.
pub struct Selection {
    pub embedder: Box<dyn Embedder>,
    /// The GPUs in use, one line each ("cuda:0 NVIDIA H200 (sm_90), 0000:19:00.0, …").
    pub gpus: Vec<String>,
    /// Device memory the model's weights take, over every GPU in use.
    pub gpu_weight_bytes: u64,
    /// Device memory in use once loaded (this process and any other), over every GPU in use.
    pub gpu_used_bytes: u64,
    /// The pipeline's (process-wide) NUMA binding.
    pub numa: Binding,
    /// Why the CPU embeds, when it does.
    pub why_cpu: Option<String>,
}

/// The embedder the configuration names, on the device `gpu.*` selects, with the process bound
/// as `numa.bind` says:
/// - `gpu.device = "off"`, or the hashing embedder: the CPU.
/// - `"auto"`: every visible GPU whose libraries load and whose warm-up batch matches the CPU
///   (cosine ≥ [`MIN_WARM_UP_COSINE`]); when none does, the CPU, with the reason logged.
/// - a device number or `gpu.devices`: those GPUs, or an error saying why not.
///
/// The CPU embedder stays loaded behind the GPUs: a GPU that fails at run time is taken out and
/// its batch embedded elsewhere.
pub fn build(config: &Config) -> Result<Selection, EmbedError> {
    let embedder_config = &config.embedder;
    let cpu: Box<dyn Embedder> = match embedder_config.kind {
        EmbedderKind::Hashing => {
            let embedder = Box::new(HashingEmbedder::new(crate::config::EMBEDDING_DIM as usize));
            return Ok(cpu_selection(
                embedder,
                config.numa.bind,
                "embedder.kind = \"hashing\"".into(),
            ));
        }
        EmbedderKind::MiniLm => {
            let model = MiniLm::cpu(
                &embedder_config.model_dir,
                embedder_config.threads,
                embedder_config.precision,
            )?;
            if model.dim() != crate::config::EMBEDDING_DIM as usize {
                return Err(EmbedError::ModelInvalid {
                    path: embedder_config.model_dir.join("config.json"),
                    reason: format!(
                        "hidden_size {} but the index stores {}-d vectors",
                        model.dim(),
                        crate::config::EMBEDDING_DIM
                    ),
                });
            }
            Box::new(model)
        }
    };
    if config.gpu.device == GpuSelection::Off {
        tracing::info!("gpu.device = \"off\": embedding on the CPU");
        return Ok(cpu_selection(
            cpu,
            config.numa.bind,
            "gpu.device = \"off\"".into(),
        ));
    }
    match gpu_selection(config, cpu) {
        Ok(selection) => Ok(selection),
        Err((reason, cpu)) => match config.gpu.named_devices() {
            Some(devices) => Err(EmbedError::DeviceUnavailable(format!(
                "GPU embedding is required (GPU {devices:?}: gpu.device, gpu.devices or --device \
                 cuda) but unavailable: {reason}"
            ))),
            None => {
                tracing::info!(reason = %reason, "no GPU used: embedding on the CPU");
                Ok(cpu_selection(cpu, config.numa.bind, reason))
            }
        },
    }
}

fn cpu_selection(embedder: Box<dyn Embedder>, numa_mode: NumaBinding, why: String) -> Selection {
    let numa = numa::bind_near(None, numa_mode, Scope::Process);
    log_binding(&numa);
    Selection {
        embedder,
        gpus: Vec::new(),
        gpu_weight_bytes: 0,
        gpu_used_bytes: 0,
        numa,
        why_cpu: Some(why),
    }
}

fn log_binding(binding: &Binding) {
    match binding {
        Binding::Bound { nodes, cpuset } => {
            tracing::info!(nodes = ?nodes, cpuset = %cpuset, "pipeline bound to NUMA node")
        }
        Binding::Unbound(reason) => tracing::info!(reason = %reason, "pipeline not NUMA-bound"),
    }
}

/// The GPU pool, or why there is none (with the CPU embedder handed back).
#[cfg(not(feature = "cuda"))]
fn gpu_selection(
    _config: &Config,
    cpu: Box<dyn Embedder>,
) -> Result<Selection, (String, Box<dyn Embedder>)> {
    Err((
        "this anomalyd was built without the cuda feature".into(),
        cpu,
    ))
}

#[cfg(feature = "cuda")]
fn gpu_selection(
    config: &Config,
    cpu: Box<dyn Embedder>,
) -> Result<Selection, (String, Box<dyn Embedder>)> {
    use cuda::{GpuOptions, GpuPool};

    if let Err(e) = cuda::libraries_present() {
        return Err((e.to_string(), cpu));
    }
    let named = config.gpu.named_devices();
    let ordinals: Vec<usize> = match &named {
        Some(list) => list.iter().map(|&n| n as usize).collect(),
        None => (0..cuda::device::device_count()).collect(),
    };
    let visible = cuda::device::device_count();
    if let Some(&missing) = ordinals.iter().find(|&&n| n >= visible) {
        return Err((
            format!("GPU {missing} requested but {visible} visible to this process"),
            cpu,
        ));
    }
    let options = GpuOptions {
        model_dir: config.embedder.model_dir.clone(),
        streams: config.gpu.streams,
        kernel_cache: Some(config.daemon.state_dir.join("kernels")),
        numa: config.numa.bind,
    };
    let strict = named.is_some();
    let mut pool = match GpuPool::start(&ordinals, &options, strict) {
        Ok(pool) => pool,
        Err(e) => return Err((e.to_string(), cpu)),
    };
    let mut cpu = cpu;
    let expected = match cpu.embed(&WARM_UP_TEXTS) {
        Ok(e) => e,
        Err(e) => return Err((format!("the CPU warm-up failed: {e}"), cpu)),
    };
    for (i, info) in pool.infos().iter().enumerate() {
        let verdict = match pool.embed_on(i, &WARM_UP_TEXTS) {
            Ok(got) => warm_up_mismatch(&expected, &got).map(|(cosine, text)| {
                cuda::CudaError::WarmUpMismatch {
                    ordinal: info.ordinal,
                    cosine,
                    min: MIN_WARM_UP_COSINE,
                    text: text.to_owned(),
                }
                .to_string()
            }),
            Err(e) => Some(format!("GPU {}: warm-up: {e}", info.ordinal)),
        };
        if let Some(reason) = verdict {
            if strict {
                return Err((reason, cpu));
            }
            pool.retire(i, reason);
        }
    }
    if pool.healthy() == 0 {
        return Err(("no GPU passed its warm-up".into(), cpu));
    }
    let infos = pool.infos();
    let live: Vec<&cuda::device::GpuInfo> = infos
        .iter()
        .filter(|i| pool.is_healthy(i.ordinal))
        .collect();
    for info in &live {
        tracing::info!(
            gpu = %info.label(),
            pci = %info.pci_bus_id,
            weights_mib = info.weight_bytes >> 20,
            used_mib = info.used_bytes >> 20,
            total_mib = info.total_bytes >> 20,
            binding = ?info.binding,
            "GPU embedder ready"
        );
    }
    // The pipeline's threads go where the GPUs are, when they are all on one node.
    let first = live[0];
    let same_place = live.iter().all(|i| i.binding == first.binding);
    let numa = if same_place {
        numa::bind_near(Some(&first.pci_bus_id), config.numa.bind, Scope::Process)
    } else {
        Binding::Unbound(
            "the GPUs in use sit on different NUMA nodes: each GPU thread is bound to its own"
                .into(),
        )
    };
    log_binding(&numa);
    let gpus = live
        .iter()
        .map(|i| format!("{}, PCI {}, {:?}", i.label(), i.pci_bus_id, i.binding))
        .collect();
    let gpu_weight_bytes = live.iter().map(|i| i.weight_bytes as u64).sum();
    let gpu_used_bytes = live.iter().map(|i| i.used_bytes as u64).sum();
    pool.set_cpu(cpu);
    Ok(Selection {
        embedder: Box::new(pool),
        gpus,
        gpu_weight_bytes,
        gpu_used_bytes,
        numa,
        why_cpu: None,
    })
}

/// The first warm-up text whose GPU vector strays from the CPU's, with the cosine.
#[cfg(feature = "cuda")]
fn warm_up_mismatch(expected: &Embeddings, got: &Embeddings) -> Option<(f32, &'static str)> {
    if got.rows() != expected.rows() || got.dim != expected.dim {
        return Some((0.0, WARM_UP_TEXTS[0]));
    }
    (0..expected.rows()).find_map(|i| {
        let cosine: f32 = expected
            .row(i)
            .iter()
            .zip(got.row(i))
            .map(|(a, b)| a * b)
            .sum();
        (cosine.is_nan() || cosine < MIN_WARM_UP_COSINE).then_some((cosine, WARM_UP_TEXTS[i]))
    })
}
