//! `[embedder]`: the model, its threads, the vector cache and batching.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::{quoted, ConfigError, Rules};

#[derive(Debug, Clone)]
pub struct EmbedderConfig {
    pub kind: EmbedderKind,
    /// Absolute: a relative `embedder.model_dir` is resolved against the state directory.
    pub model_dir: PathBuf,
    /// Threads for the CPU backend; 0 = every core this process may run on.
    pub threads: usize,
    /// Vectors kept by canonical text; 0 turns the cache off.
    pub cache_entries: usize,
    pub batch_size: usize,
    pub batch_max_wait: Duration,
    /// The CPU backend's matrix products.
    pub precision: Precision,
}

/// `embedder.precision`: the arithmetic of the CPU backend's matrix products.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// bf16 where the CPU has AMX (tiles for bf16) or is AMD's with AVX512-BF16, else fp32.
    Auto,
    /// f32 throughout (OpenBLAS).
    Fp32,
    /// Weights and activations rounded to bf16 for the products, sums in f32; start-up fails on
    /// a CPU without AVX512-BF16.
    Bf16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmbedderKind {
    /// all-MiniLM-L6-v2 from `embedder.model_dir`.
    MiniLm,
    /// Deterministic feature hashing: only for installs without the model, and only when asked for.
    Hashing,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawEmbedder {
    pub kind: String,
    pub model_dir: PathBuf,
    pub threads: i64,
    pub cache_entries: i64,
    pub batch_size: i64,
    pub batch_max_wait_ms: i64,
    pub precision: String,
}

/// Where the service finds the model; `scripts/fetch-model DIR` installs it.
pub const DEFAULT_MODEL_DIR: &str = "/var/lib/anomalyd/models/all-MiniLM-L6-v2";

impl Default for RawEmbedder {
    fn default() -> Self {
        RawEmbedder {
            kind: "minilm".into(),
            model_dir: PathBuf::from(DEFAULT_MODEL_DIR),
            threads: 0,
            cache_entries: 16384,
            batch_size: 64,
            batch_max_wait_ms: 20,
            precision: "auto".into(),
        }
    }
}

impl RawEmbedder {
    /// `state_dir` resolves a relative `model_dir`.
    pub(super) fn validate(
        &self,
        rules: &Rules,
        state_dir: &Path,
    ) -> Result<EmbedderConfig, ConfigError> {
        let e = self;
        let kind = match e.kind.as_str() {
            "minilm" => EmbedderKind::MiniLm,
            "hashing" => EmbedderKind::Hashing,
            other => {
                return Err(rules.invalid(
                    "embedder.kind",
                    &quoted(other),
                    "must be minilm or hashing",
                ))
            }
        };
        if e.model_dir.as_os_str().is_empty() {
            return Err(rules.invalid(
                "embedder.model_dir",
                &quoted(""),
                "must name the model directory",
            ));
        }
        let model_dir = state_dir.join(&e.model_dir);
        let threads = rules.in_range("embedder.threads", e.threads, 0, 1024)? as usize;
        let cache_entries =
            rules.in_range("embedder.cache_entries", e.cache_entries, 0, 1 << 24)? as usize;
        let batch_size = rules.in_range("embedder.batch_size", e.batch_size, 1, 4096)? as usize;
        let batch_max_wait_ms =
            rules.in_range("embedder.batch_max_wait_ms", e.batch_max_wait_ms, 0, 10_000)?;

        let precision = match e.precision.as_str() {
            "auto" => Precision::Auto,
            "fp32" => Precision::Fp32,
            "bf16" => Precision::Bf16,
            other => {
                return Err(rules.invalid(
                    "embedder.precision",
                    &quoted(other),
                    "must be auto, fp32 or bf16",
                ))
            }
        };
        Ok(EmbedderConfig {
            kind,
            model_dir,
            threads,
            cache_entries,
            batch_size,
            batch_max_wait: Duration::from_millis(batch_max_wait_ms as u64),
            precision,
        })
    }
}
