//! The BERT encoder and sentence-transformers' pooling, written once over [`Backend`]: a handful of
//! operations on a backend's own matrices. The CPU backend implements them with OpenBLAS; a GPU
//! backend implements the same operations with kernels and cuBLAS and reuses this structure.
//!
//! A batch is *packed*: the tokens of every text are rows of one matrix, one text after another,
//! with no padding. Every layer except attention works row by row, so packing is exact and wastes
//! nothing, however different the texts' lengths; attention runs per text over its own rows.

use std::ops::Range;

use super::model::{BertConfig, Tensors};
use super::EmbedError;

/// `y = x·Wᵀ + b` with `W` stored `[out, in]`, as PyTorch stores it.
pub struct Linear<P> {
    pub weight: P,
    pub bias: P,
    pub inputs: usize,
    pub outputs: usize,
}

pub struct LayerNorm<P> {
    pub weight: P,
    pub bias: P,
    pub eps: f32,
}

/// Word, position and token-type tables (`[vocab, hidden]`, `[positions, hidden]`, `[types, hidden]`).
pub struct EmbeddingTables<P> {
    pub words: P,
    pub positions: P,
    pub token_types: P,
    pub norm: LayerNorm<P>,
}

/// A packed batch: token ids of every text, back to back, and where each text's rows are.
#[derive(Debug, Clone, Default)]
pub struct Packed {
    pub ids: Vec<u32>,
    pub positions: Vec<u32>,
    pub texts: Vec<Range<usize>>,
}

impl Packed {
    pub fn push(&mut self, ids: &[u32]) {
        let start = self.ids.len();
        self.ids.extend_from_slice(ids);
        self.positions.extend(0..ids.len() as u32);
        self.texts.push(start..self.ids.len());
    }

    pub fn tokens(&self) -> usize {
        self.ids.len()
    }
}

/// What a weight is for, so a backend can keep each in the precision its use needs (the CUDA
/// backend keeps linear weights in fp16 for the tensor cores, tables and vectors in fp32).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    /// An embedding table, read row by row.
    Table,
    /// A linear layer's `[out, in]` weight, an operand of matrix products.
    LinearWeight,
    /// A bias or a LayerNorm scale or shift.
    Vector,
}

/// What a backend provides. `Matrix` is row-major `[rows, cols]` in the backend's memory; `Param`
/// is a weight tensor uploaded once.
pub trait Backend {
    type Matrix;
    type Param;

    /// How many threads this backend may split each operation over (the CPU backend's products
    /// and row-wise steps); a backend that parallelises on its own device ignores it.
    fn set_threads(&mut self, _threads: usize) {}
    /// Takes a weight tensor (row-major, already shape-checked) into the backend's memory.
    fn param(
        &mut self,
        values: Vec<f32>,
        shape: &[usize],
        kind: ParamKind,
    ) -> Result<Self::Param, EmbedError>;
    /// Tokens one forward pass may hold: bounds the activations, the widest of which is
    /// `tokens × intermediate` floats.
    fn max_tokens_per_pass(&self) -> usize {
        8192
    }
    /// LayerNorm(word[id] + position[pos] + token_type[0]) per token.
    fn embed(
        &mut self,
        batch: &Packed,
        tables: &EmbeddingTables<Self::Param>,
        hidden: usize,
    ) -> Result<Self::Matrix, EmbedError>;
    fn linear(
        &mut self,
        x: &Self::Matrix,
        layer: &Linear<Self::Param>,
    ) -> Result<Self::Matrix, EmbedError>;
    /// The exact (erf) GELU, in place.
    fn gelu(&mut self, x: &mut Self::Matrix) -> Result<(), EmbedError>;
    /// Multi-head self-attention per text: `qkv` rows hold `[q | k | v]`, each `heads·head_dim`
    /// wide; the result is `softmax(q·kᵀ/√head_dim)·v` per head, heads side by side.
    fn attention(
        &mut self,
        qkv: &Self::Matrix,
        texts: &[Range<usize>],
        heads: usize,
    ) -> Result<Self::Matrix, EmbedError>;
    /// `x = LayerNorm(x + residual)`, in place.
    fn add_norm(
        &mut self,
        x: &mut Self::Matrix,
        residual: &Self::Matrix,
        norm: &LayerNorm<Self::Param>,
    ) -> Result<(), EmbedError>;
    /// `GELU(linear(x))`; a backend may fuse the two.
    fn linear_gelu(
        &mut self,
        x: &Self::Matrix,
        layer: &Linear<Self::Param>,
    ) -> Result<Self::Matrix, EmbedError> {
        let mut y = self.linear(x, layer)?;
        self.gelu(&mut y)?;
        Ok(y)
    }
    /// `LayerNorm(linear(x) + residual)`; a backend may fuse the bias, residual and norm.
    fn linear_add_norm(
        &mut self,
        x: &Self::Matrix,
        layer: &Linear<Self::Param>,
        residual: &Self::Matrix,
        norm: &LayerNorm<Self::Param>,
    ) -> Result<Self::Matrix, EmbedError> {
        let mut y = self.linear(x, layer)?;
        self.add_norm(&mut y, residual, norm)?;
        Ok(y)
    }
    /// Mean over each text's rows, L2-normalised, back in host memory: `texts.len() × cols`.
    fn pool(&mut self, x: &Self::Matrix, texts: &[Range<usize>]) -> Result<Vec<f32>, EmbedError>;
}

struct EncoderLayer<P> {
    /// Query, key and value projections stacked into one `[3·hidden, hidden]` product.
    qkv: Linear<P>,
    attention_out: Linear<P>,
    attention_norm: LayerNorm<P>,
    intermediate: Linear<P>,
    output: Linear<P>,
    output_norm: LayerNorm<P>,
}

pub struct Bert<P> {
    pub config: BertConfig,
    embeddings: EmbeddingTables<P>,
    layers: Vec<EncoderLayer<P>>,
}

impl<P> Bert<P> {
    /// Loads every weight into `backend`, each checked against `config`'s shapes.
    pub fn load<B: Backend<Param = P>>(
        backend: &mut B,
        config: &BertConfig,
        tensors: &Tensors<'_>,
    ) -> Result<Bert<P>, EmbedError> {
        fn param<B: Backend>(
            backend: &mut B,
            tensors: &Tensors<'_>,
            name: &str,
            shape: &[usize],
            kind: ParamKind,
        ) -> Result<B::Param, EmbedError> {
            backend.param(tensors.get(name, shape)?, shape, kind)
        }
        fn linear<B: Backend>(
            backend: &mut B,
            tensors: &Tensors<'_>,
            prefix: &str,
            outputs: usize,
            inputs: usize,
        ) -> Result<Linear<B::Param>, EmbedError> {
            Ok(Linear {
                weight: param(
                    backend,
                    tensors,
                    &format!("{prefix}.weight"),
                    &[outputs, inputs],
                    ParamKind::LinearWeight,
                )?,
                bias: param(
                    backend,
                    tensors,
                    &format!("{prefix}.bias"),
                    &[outputs],
                    ParamKind::Vector,
                )?,
                inputs,
                outputs,
            })
        }
        fn norm<B: Backend>(
            backend: &mut B,
            tensors: &Tensors<'_>,
            prefix: &str,
            width: usize,
            eps: f32,
        ) -> Result<LayerNorm<B::Param>, EmbedError> {
            Ok(LayerNorm {
                weight: param(
                    backend,
                    tensors,
                    &format!("{prefix}.weight"),
                    &[width],
                    ParamKind::Vector,
                )?,
                bias: param(
                    backend,
                    tensors,
                    &format!("{prefix}.bias"),
                    &[width],
                    ParamKind::Vector,
                )?,
                eps,
            })
        }

        let h = config.hidden;
        let eps = config.layer_norm_eps;
        let embeddings = EmbeddingTables {
            words: param(
                backend,
                tensors,
                "embeddings.word_embeddings.weight",
                &[config.vocab_size, h],
                ParamKind::Table,
            )?,
            positions: param(
                backend,
                tensors,
                "embeddings.position_embeddings.weight",
                &[config.max_positions, h],
                ParamKind::Table,
            )?,
            token_types: param(
                backend,
                tensors,
                "embeddings.token_type_embeddings.weight",
                &[config.type_vocab, h],
                ParamKind::Table,
            )?,
            norm: norm(backend, tensors, "embeddings.LayerNorm", h, eps)?,
        };
        let mut layers = Vec::with_capacity(config.layers);
        for l in 0..config.layers {
            let prefix = format!("encoder.layer.{l}");
            let mut stacked_weight = Vec::with_capacity(3 * h * h);
            let mut stacked_bias = Vec::with_capacity(3 * h);
            for part in ["query", "key", "value"] {
                let name = format!("{prefix}.attention.self.{part}");
                stacked_weight.extend(tensors.get(&format!("{name}.weight"), &[h, h])?);
                stacked_bias.extend(tensors.get(&format!("{name}.bias"), &[h])?);
            }
            let qkv = Linear {
                weight: backend.param(stacked_weight, &[3 * h, h], ParamKind::LinearWeight)?,
                bias: backend.param(stacked_bias, &[3 * h], ParamKind::Vector)?,
                inputs: h,
                outputs: 3 * h,
            };
            let p = |rest: &str| format!("{prefix}.{rest}");
            layers.push(EncoderLayer {
                qkv,
                attention_out: linear(backend, tensors, &p("attention.output.dense"), h, h)?,
                attention_norm: norm(backend, tensors, &p("attention.output.LayerNorm"), h, eps)?,
                intermediate: linear(
                    backend,
                    tensors,
                    &p("intermediate.dense"),
                    config.intermediate,
                    h,
                )?,
                output: linear(backend, tensors, &p("output.dense"), h, config.intermediate)?,
                output_norm: norm(backend, tensors, &p("output.LayerNorm"), h, eps)?,
            });
        }
        Ok(Bert {
            config: config.clone(),
            embeddings,
            layers,
        })
    }

    /// One unit vector per text of `batch`, row-major.
    pub fn forward<B: Backend<Param = P>>(
        &self,
        backend: &mut B,
        batch: &Packed,
    ) -> Result<Vec<f32>, EmbedError> {
        let mut hidden = backend.embed(batch, &self.embeddings, self.config.hidden)?;
        for layer in &self.layers {
            let qkv = backend.linear(&hidden, &layer.qkv)?;
            let context = backend.attention(&qkv, &batch.texts, self.config.heads)?;
            drop(qkv);
            let attended = backend.linear_add_norm(
                &context,
                &layer.attention_out,
                &hidden,
                &layer.attention_norm,
            )?;
            drop(context);
            let intermediate = backend.linear_gelu(&attended, &layer.intermediate)?;
            hidden = backend.linear_add_norm(
                &intermediate,
                &layer.output,
                &attended,
                &layer.output_norm,
            )?;
        }
        backend.pool(&hidden, &batch.texts)
    }
}
