//! The model directory: `config.json` (BERT hyper-parameters), `sentence_bert_config.json` (the
//! sequence length sentence-transformers truncates at), `tokenizer.json` and `model.safetensors`.
//! Every tensor's shape is checked against the config before any is used, so a different or
//! damaged model is refused at start-up with the tensor named, never mis-computed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::EmbedError;

/// Files a model directory must hold. `sentence_bert_config.json` carries the 256-token truncation
/// sentence-transformers applies; without it long texts would be embedded differently.
const REQUIRED_FILES: [&str; 4] = [
    "config.json",
    "sentence_bert_config.json",
    "tokenizer.json",
    "model.safetensors",
];

/// The packaged model, for the default `embedder.model_dir` and the error that names the fetch.
pub const MODEL_NAME: &str = "all-MiniLM-L6-v2";

/// The hyper-parameters the forward pass depends on, from `config.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub intermediate: usize,
    pub max_positions: usize,
    pub type_vocab: usize,
    pub layer_norm_eps: f32,
    /// Tokens per text after truncation ([CLS] and [SEP] included).
    pub max_seq_len: usize,
}

#[derive(Deserialize)]
struct RawBertConfig {
    model_type: Option<String>,
    vocab_size: usize,
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    intermediate_size: usize,
    max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    type_vocab_size: usize,
    #[serde(default = "default_eps")]
    layer_norm_eps: f64,
    #[serde(default = "default_act")]
    hidden_act: String,
    #[serde(default = "default_position_type")]
    position_embedding_type: String,
}

fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}
fn default_act() -> String {
    "gelu".into()
}
fn default_position_type() -> String {
    "absolute".into()
}

#[derive(Deserialize)]
struct SentenceBertConfig {
    max_seq_length: usize,
}

/// An opened model directory: the parsed configs and the weights, memory-mapped.
pub struct ModelFiles {
    pub dir: PathBuf,
    pub config: BertConfig,
    /// `all-MiniLM-L6-v2@` and the first 12 hex digits of the weights' sha256.
    pub model_id: String,
    weights: memmap2::Mmap,
}

impl ModelFiles {
    pub fn open(dir: &Path) -> Result<ModelFiles, EmbedError> {
        for file in REQUIRED_FILES {
            if !dir.join(file).is_file() {
                return Err(EmbedError::ModelMissing {
                    dir: dir.to_owned(),
                    file,
                });
            }
        }
        let invalid = |file: &str, reason: String| EmbedError::ModelInvalid {
            path: dir.join(file),
            reason,
        };
        let raw: RawBertConfig = read_json(dir, "config.json")?;
        if raw.model_type.as_deref().is_some_and(|t| t != "bert") {
            return Err(invalid(
                "config.json",
                format!(
                    "model_type {:?} is not supported: only BERT encoders are",
                    raw.model_type.unwrap_or_default()
                ),
            ));
        }
        if raw.hidden_act != "gelu" {
            return Err(invalid(
                "config.json",
                format!(
                    "hidden_act {:?}: only \"gelu\" is supported",
                    raw.hidden_act
                ),
            ));
        }
        if raw.position_embedding_type != "absolute" {
            return Err(invalid(
                "config.json",
                format!(
                    "position_embedding_type {:?}: only \"absolute\" is supported",
                    raw.position_embedding_type
                ),
            ));
        }
        if raw.num_attention_heads == 0 || !raw.hidden_size.is_multiple_of(raw.num_attention_heads)
        {
            return Err(invalid(
                "config.json",
                format!(
                    "hidden_size {} is not divisible by num_attention_heads {}",
                    raw.hidden_size, raw.num_attention_heads
                ),
            ));
        }
        // sentence-transformers truncates at its own max_seq_length, not at tokenizer.json's.
        let max_seq_len =
            read_json::<SentenceBertConfig>(dir, "sentence_bert_config.json")?.max_seq_length;
        if max_seq_len < 2 || max_seq_len > raw.max_position_embeddings {
            return Err(invalid(
                "sentence_bert_config.json",
                format!(
                    "max_seq_length {max_seq_len} must be between 2 and config.json's \
                     max_position_embeddings {}",
                    raw.max_position_embeddings
                ),
            ));
        }
        let config = BertConfig {
            vocab_size: raw.vocab_size,
            hidden: raw.hidden_size,
            layers: raw.num_hidden_layers,
            heads: raw.num_attention_heads,
            intermediate: raw.intermediate_size,
            max_positions: raw.max_position_embeddings,
            type_vocab: raw.type_vocab_size,
            layer_norm_eps: raw.layer_norm_eps as f32,
            max_seq_len,
        };

        let path = dir.join("model.safetensors");
        let file = std::fs::File::open(&path).map_err(|e| EmbedError::ModelInvalid {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        // SAFETY: the map is read-only, lives only while the model loads (every tensor is copied
        // out), and is only read as bytes. The one hazard is another process truncating the file
        // under the map, which would fault a read: scripts/fetch-model never rewrites a model
        // file in place; it verifies a new directory and renames it over the old one, whose
        // files are unlinked, not truncated, so a map of them stays valid.
        let weights =
            unsafe { memmap2::Mmap::map(&file) }.map_err(|e| EmbedError::ModelInvalid {
                path: path.clone(),
                reason: format!("cannot map: {e}"),
            })?;
        let digest = Sha256::digest(&weights[..]);
        let model_id = format!("{MODEL_NAME}@{}", &hex::encode(digest)[..12]);
        Ok(ModelFiles {
            dir: dir.to_owned(),
            config,
            model_id,
            weights,
        })
    }

    /// The tensors by name, each checked for dtype F32 when read through [`Tensors::get`].
    pub fn tensors(&self) -> Result<Tensors<'_>, EmbedError> {
        let parsed = safetensors::SafeTensors::deserialize(&self.weights).map_err(|e| {
            EmbedError::ModelInvalid {
                path: self.dir.join("model.safetensors"),
                reason: format!("not a safetensors file: {e}"),
            }
        })?;
        let views = parsed.tensors().into_iter().collect();
        Ok(Tensors {
            path: self.dir.join("model.safetensors"),
            views,
        })
    }
}

fn read_json<T: serde::de::DeserializeOwned>(dir: &Path, file: &str) -> Result<T, EmbedError> {
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path).map_err(|e| EmbedError::ModelInvalid {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    serde_json::from_str(&text).map_err(|e| EmbedError::ModelInvalid {
        path,
        reason: e.to_string(),
    })
}

/// The weights of `model.safetensors`, looked up by name with their shape checked.
pub struct Tensors<'a> {
    path: PathBuf,
    views: HashMap<String, safetensors::tensor::TensorView<'a>>,
}

impl<'a> Tensors<'a> {
    /// The f32 values of `name`, which must have exactly `shape`. The file is little-endian, as
    /// is every platform this builds for; values are copied out, so alignment never matters.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, EmbedError> {
        let invalid = |reason: String| EmbedError::ModelInvalid {
            path: self.path.clone(),
            reason,
        };
        let view = self
            .views
            .get(name)
            .ok_or_else(|| invalid(format!("tensor {name} is missing")))?;
        if view.dtype() != safetensors::Dtype::F32 {
            return Err(invalid(format!(
                "tensor {name} has dtype {:?}; F32 expected",
                view.dtype()
            )));
        }
        if view.shape() != shape {
            return Err(invalid(format!(
                "tensor {name} has shape {:?}; the config needs {shape:?}",
                view.shape()
            )));
        }
        Ok(view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }
}
