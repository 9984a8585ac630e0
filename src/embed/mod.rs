//! Text → unit vector. A tiny [`Embedder`] trait with one implementation per backend; the pipeline
//! owns exactly one embedder, on its own thread.
//!
//! - [`minilm`]: all-MiniLM-L6-v2 ([`tokenize`] → [`bert`] over a [`bert::Backend`] → pooling),
//!   with the weights and configs of [`model`]; [`cpu`] is the OpenBLAS backend.
//! - [`hashing`]: feature hashing, only when `embedder.kind = "hashing"` asks for it.
//! - [`cache`]: the LRU of vectors by canonical text, in front of whichever embedder runs.

pub mod bert;
pub mod blas;
pub mod cache;
pub mod cpu;
mod hashing;
pub mod minilm;
pub mod model;
pub mod tokenize;

use std::path::PathBuf;

pub use cache::{EmbeddingCache, Lookups};
pub use hashing::HashingEmbedder;
pub use minilm::MiniLm;

use crate::config::{EmbedderConfig, EmbedderKind, GpuSelection};

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

/// The embedder `config` names, on the device `gpu` selects. There is no CUDA embedder yet, so
/// `auto` means the CPU and a named GPU is refused rather than silently replaced.
pub fn build(config: &EmbedderConfig, gpu: GpuSelection) -> Result<Box<dyn Embedder>, EmbedError> {
    if let GpuSelection::Device(n) = gpu {
        return Err(EmbedError::DeviceUnavailable(format!(
            "gpu.device = {n}: this version of anomalyd embeds on the CPU only; \
             set gpu.device = \"auto\" or \"off\""
        )));
    }
    match config.kind {
        EmbedderKind::Hashing => Ok(Box::new(HashingEmbedder::new(
            crate::config::EMBEDDING_DIM as usize,
        ))),
        EmbedderKind::MiniLm => {
            let model = MiniLm::cpu(&config.model_dir, config.threads)?;
            if model.dim() != crate::config::EMBEDDING_DIM as usize {
                return Err(EmbedError::ModelInvalid {
                    path: config.model_dir.join("config.json"),
                    reason: format!(
                        "hidden_size {} but the index stores {}-d vectors",
                        model.dim(),
                        crate::config::EMBEDDING_DIM
                    ),
                });
            }
            Ok(Box::new(model))
        }
    }
}
