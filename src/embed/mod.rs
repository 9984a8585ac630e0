//! Text → unit vector. A tiny [`Embedder`] trait with one implementation per backend; the pipeline
//! owns exactly one embedder, on its own thread.

mod hashing;

pub use hashing::HashingEmbedder;

use crate::config::{EmbedderConfig, EmbedderKind};

#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("embedder health check failed: {0}")]
    Unhealthy(String),
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

pub fn build(config: &EmbedderConfig) -> Result<Box<dyn Embedder>, EmbedError> {
    match config.kind {
        EmbedderKind::Hashing => Ok(Box::new(HashingEmbedder::new(
            crate::config::EMBEDDING_DIM as usize,
        ))),
    }
}
