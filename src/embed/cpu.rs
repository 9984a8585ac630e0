//! The CPU [`Backend`]: matrix products on weights packed at load ([`fp32`] where the CPU has
//! AVX-512F or AVX2 with FMA, [`bf16`] on that path) or through OpenBLAS, attention per text
//! ([`attention`]), row-wise steps in plain loops.
//!
//! Every product runs single-threaded and we split work ourselves: OpenBLAS's own worker
//! threads spin (`sched_yield`) between calls and, on a two-core machine, measured 12% of the
//! time stolen from the non-GEMM steps. [`super::MiniLm`] gives each core its own backend and a
//! share of the texts; a batch of one text instead gets one backend with
//! [`Backend::set_threads`] > 1, which splits each product's output columns, each row-wise step
//! and attention's heads over helper threads it keeps ([`super::spin_pool`]).

use std::ops::Range;

use super::bert::{Backend, EmbeddingTables, LayerNorm, Linear, Packed, ParamKind};
use super::spin_pool::SpinPool;
use super::{attention, bf16, blas, fp32, EmbedError};

/// A weight tensor on the CPU: its f32 values, or, for a linear weight, the panels a kernel of
/// ours multiplies instead (the row-major copy is dropped): bf16 on the bf16 path, f32 where
/// the CPU has AVX-512F or AVX2 with FMA.
pub struct CpuParam {
    values: Vec<f32>,
    packed: Option<PackedWeight>,
}

/// A linear weight packed once, at load, for one of our kernels.
enum PackedWeight {
    Bf16(bf16::PackedWeight),
    Fp32(fp32::PackedWeight),
}

impl std::ops::Deref for CpuParam {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.values
    }
}

/// Row-major `[rows, cols]` in host memory.
pub struct HostMatrix {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f32>,
}

/// Below this many output elements a product runs on the calling thread: handing a band to a
/// helper costs more. A lone text of 18 tokens has 6,912 in its smallest product.
const PARALLEL_MIN_PRODUCT: usize = 2 * 1024;
/// The same for a row-wise step (GELU's `erf` is the one that matters: 27,648 values a layer
/// for that text).
const PARALLEL_MIN_ROWWISE: usize = 8 * 1024;

pub struct CpuBackend {
    threads: usize,
    /// Linear weights loaded through this backend go to bf16 ([`bf16`]); the other tensors and
    /// every step but the products stay f32.
    bf16: bool,
    /// `threads - 1` helper threads, kept between calls, for a lone text's products and
    /// row-wise steps (the calling thread does one share). Threads kept, not started per
    /// product: a pass has 24 products and as many row-wise steps, and starting a thread for
    /// each cost more than splitting them gained at this size; and threads that spin between
    /// a pass's steps ([`super::spin_pool`]), not sleep.
    helpers: Option<SpinPool>,
}

impl CpuBackend {
    /// A backend splitting its work over `threads` (at least 1). OpenBLAS itself must run
    /// single-threaded: see [`blas::set_threads`].
    pub fn new(threads: usize) -> CpuBackend {
        let mut backend = CpuBackend {
            threads: 1,
            bf16: false,
            helpers: None,
        };
        backend.set_threads(threads);
        backend
    }

    /// As [`CpuBackend::new`], with the linear weights it loads rounded to bf16 and multiplied by
    /// the bf16 kernels (AMX or AVX512-BF16).
    ///
    /// # Panics
    /// When [`bf16::available`] is false.
    pub fn bf16(threads: usize) -> CpuBackend {
        assert!(bf16::available(), "CpuBackend::bf16 without AVX512-BF16");
        let mut backend = CpuBackend::new(threads);
        backend.bf16 = true;
        backend
    }

    /// Runs `tasks[i]()` for every task, the first on the calling thread and the others on the
    /// helpers, and returns when all are done.
    fn run_all<T: Send>(&self, tasks: Vec<Box<dyn FnOnce() -> T + Send + '_>>) -> Vec<T> {
        self.helpers
            .as_ref()
            .expect("run_all needs helpers")
            .run_all(tasks)
    }

    /// Attention with the heads split between the threads (a lone text: its attention ran on
    /// one thread while the other waited, about a tenth of its pass). Each thread copies its
    /// heads' queries, keys and values into a `[q | k | v]` of its own and attends over them
    /// with the same kernel, so every head's output is the same bits as in one call.
    fn attention_by_heads(
        &self,
        qkv: &HostMatrix,
        texts: &[Range<usize>],
        heads: usize,
    ) -> HostMatrix {
        let hidden = qkv.cols / 3;
        // What `attend_text` asserts of the whole, which its calls on parts cannot see.
        assert!(
            qkv.cols == 3 * hidden && hidden.is_multiple_of(heads),
            "attention: rows are not [q | k | v] of {heads} heads"
        );
        let head_dim = hidden / heads;
        let per_thread = heads.div_ceil(self.threads);
        let groups: Vec<Range<usize>> = (0..heads)
            .step_by(per_thread)
            .map(|h| h..(h + per_thread).min(heads))
            .collect();
        let attend = |group: Range<usize>| -> Vec<f32> {
            let part = group.len() * head_dim;
            let columns = group.start * head_dim..group.end * head_dim;
            let mut own = Vec::with_capacity(qkv.rows * 3 * part);
            for row in qkv.data.chunks_exact(qkv.cols) {
                for third in 0..3 {
                    own.extend_from_slice(&row[third * hidden..][columns.clone()]);
                }
            }
            let mut out = vec![0.0; qkv.rows * part];
            for text in texts {
                attention::attend_text(
                    &own[text.start * 3 * part..text.end * 3 * part],
                    part,
                    group.len(),
                    &mut out[text.start * part..text.end * part],
                );
            }
            out
        };
        let attend = &attend;
        let parts = self.run_all(
            groups
                .iter()
                .map(|group| {
                    let group = group.clone();
                    Box::new(move || attend(group)) as Box<dyn FnOnce() -> Vec<f32> + Send>
                })
                .collect(),
        );
        HostMatrix {
            rows: qkv.rows,
            cols: hidden,
            data: interleave_columns(qkv.rows, &parts),
        }
    }

    /// Runs `f(first_row, rows)` over chunks of whole rows of `data`, in parallel when it is large.
    fn par_rows(&self, data: &mut [f32], cols: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
        let rows = data.len() / cols.max(1);
        if self.threads <= 1 || data.len() < PARALLEL_MIN_ROWWISE || rows < 2 {
            f(0, data);
            return;
        }
        let per_thread = rows.div_ceil(self.threads);
        let f = &f;
        let tasks: Vec<Box<dyn FnOnce() + Send + '_>> = data
            .chunks_mut(per_thread * cols)
            .enumerate()
            .map(|(i, chunk)| {
                Box::new(move || f(i * per_thread, chunk)) as Box<dyn FnOnce() + Send>
            })
            .collect();
        self.run_all(tasks);
    }
}

/// Row-major matrices of `rows` rows, each a band of columns (its width its length / `rows`),
/// side by side as one row-major matrix.
fn interleave_columns(rows: usize, parts: &[Vec<f32>]) -> Vec<f32> {
    let widths: Vec<usize> = parts.iter().map(|p| p.len() / rows.max(1)).collect();
    let mut data = Vec::with_capacity(parts.iter().map(Vec::len).sum());
    for r in 0..rows {
        for (part, &width) in parts.iter().zip(&widths) {
            data.extend_from_slice(&part[r * width..(r + 1) * width]);
        }
    }
    data
}

impl Backend for CpuBackend {
    type Matrix = HostMatrix;
    type Param = CpuParam;

    fn set_threads(&mut self, threads: usize) {
        let threads = threads.max(1);
        let helpers = self.helpers.as_ref().map_or(0, SpinPool::threads);
        // Kept while the backend works alone (threads = 1 between lone texts): idle helpers
        // park.
        if threads > 1 && helpers != threads - 1 {
            let built = SpinPool::new(threads - 1, |i| format!("anomalyd-embed-helper{i}"));
            match built {
                Ok(pool) => self.helpers = Some(pool),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot start the embedding helper threads; one text is embedded on one thread");
                    self.helpers = None;
                    self.threads = 1;
                    return;
                }
            }
        }
        self.threads = threads;
    }

    fn param(
        &mut self,
        values: Vec<f32>,
        shape: &[usize],
        kind: ParamKind,
    ) -> Result<CpuParam, EmbedError> {
        let packed = match (kind, shape) {
            (ParamKind::LinearWeight, &[outputs, inputs]) if self.bf16 => Some(PackedWeight::Bf16(
                bf16::PackedWeight::pack(&values, outputs, inputs),
            )),
            (ParamKind::LinearWeight, &[outputs, inputs]) if fp32::available() => Some(
                PackedWeight::Fp32(fp32::PackedWeight::pack(&values, outputs, inputs)),
            ),
            _ => None,
        };
        match packed {
            Some(packed) => Ok(CpuParam {
                values: Vec::new(),
                packed: Some(packed),
            }),
            None => Ok(CpuParam {
                values,
                packed: None,
            }),
        }
    }

    fn embed(
        &mut self,
        batch: &Packed,
        tables: &EmbeddingTables<CpuParam>,
        hidden: usize,
    ) -> Result<HostMatrix, EmbedError> {
        let mut data = vec![0.0; batch.tokens() * hidden];
        let token_type = &tables.token_types[..hidden];
        for (t, row) in data.chunks_exact_mut(hidden).enumerate() {
            let id = batch.ids[t] as usize;
            let pos = batch.positions[t] as usize;
            let word = tables
                .words
                .get(id * hidden..(id + 1) * hidden)
                .ok_or_else(|| {
                    EmbedError::Tokenizer(format!("token id {id} is outside the vocabulary"))
                })?;
            let position = &tables.positions[pos * hidden..(pos + 1) * hidden];
            for (((out, w), p), ty) in row.iter_mut().zip(word).zip(position).zip(token_type) {
                *out = w + p + ty;
            }
            layer_norm(row, &tables.norm);
        }
        Ok(HostMatrix {
            rows: batch.tokens(),
            cols: hidden,
            data,
        })
    }

    fn linear(
        &mut self,
        x: &HostMatrix,
        layer: &Linear<CpuParam>,
    ) -> Result<HostMatrix, EmbedError> {
        debug_assert_eq!(x.cols, layer.inputs);
        let (rows, inputs, outputs) = (x.rows, layer.inputs, layer.outputs);
        // On the bf16 path the activations are rounded once, for every band.
        let left = match layer.weight.packed {
            Some(PackedWeight::Bf16(_)) => Some(bf16::PackedRows::pack(&x.data, rows, inputs)),
            _ => None,
        };
        let product = |columns: Range<usize>| {
            let width = columns.len();
            let mut part = Vec::with_capacity(rows * width);
            for _ in 0..rows {
                part.extend_from_slice(&layer.bias[columns.clone()]);
            }
            match (&layer.weight.packed, &left) {
                (Some(PackedWeight::Bf16(weight)), Some(left)) => {
                    bf16::gemm_nt(left, weight, columns, &mut part)
                }
                (Some(PackedWeight::Fp32(weight)), _) => {
                    fp32::gemm_nt(&x.data, rows, weight, columns, &mut part)
                }
                _ => {
                    let weight = &layer.weight[columns.start * inputs..columns.end * inputs];
                    blas::gemm_nt(rows, width, inputs, &x.data, weight, 1.0, &mut part);
                }
            }
            part
        };
        let data = if self.threads <= 1 || rows * outputs < PARALLEL_MIN_PRODUCT {
            product(0..outputs)
        } else {
            // Each thread computes a band of output columns (multiples of 16, the kernel's
            // width), then the bands are interleaved back into rows.
            let band = outputs.div_ceil(self.threads).next_multiple_of(16);
            let bands: Vec<Range<usize>> = (0..outputs)
                .step_by(band)
                .map(|start| start..(start + band).min(outputs))
                .collect();
            let product = &product;
            let parts = self.run_all(
                bands
                    .iter()
                    .map(|cols| {
                        Box::new(move || product(cols.clone()))
                            as Box<dyn FnOnce() -> Vec<f32> + Send>
                    })
                    .collect(),
            );
            interleave_columns(rows, &parts)
        };
        Ok(HostMatrix {
            rows: x.rows,
            cols: layer.outputs,
            data,
        })
    }

    fn gelu(&mut self, x: &mut HostMatrix) -> Result<(), EmbedError> {
        self.par_rows(&mut x.data, x.cols, |_, chunk| gelu_values(chunk));
        Ok(())
    }

    fn attention(
        &mut self,
        qkv: &HostMatrix,
        texts: &[Range<usize>],
        heads: usize,
    ) -> Result<HostMatrix, EmbedError> {
        let hidden = qkv.cols / 3;
        if self.threads > 1 && heads > 1 && qkv.data.len() >= PARALLEL_MIN_ROWWISE {
            return Ok(self.attention_by_heads(qkv, texts, heads));
        }
        // Runs on the calling thread: several texts are already split between workers.
        let mut out = vec![0.0; qkv.rows * hidden];
        for text in texts {
            attention::attend_text(
                &qkv.data[text.start * qkv.cols..text.end * qkv.cols],
                hidden,
                heads,
                &mut out[text.start * hidden..text.end * hidden],
            );
        }
        Ok(HostMatrix {
            rows: qkv.rows,
            cols: hidden,
            data: out,
        })
    }

    fn add_norm(
        &mut self,
        x: &mut HostMatrix,
        residual: &HostMatrix,
        norm: &LayerNorm<CpuParam>,
    ) -> Result<(), EmbedError> {
        let cols = x.cols;
        self.par_rows(&mut x.data, cols, |first_row, chunk| {
            let residual = &residual.data[first_row * cols..first_row * cols + chunk.len()];
            add_norm_rows(chunk, residual, cols, norm);
        });
        Ok(())
    }

    fn pool(&mut self, x: &HostMatrix, texts: &[Range<usize>]) -> Result<Vec<f32>, EmbedError> {
        let cols = x.cols;
        let mut out = vec![0.0f32; texts.len() * cols];
        for (text, pooled) in texts.iter().zip(out.chunks_exact_mut(cols)) {
            for row in x.data[text.start * cols..text.end * cols].chunks_exact(cols) {
                pooled.iter_mut().zip(row).for_each(|(p, v)| *p += v);
            }
            let count = text.len().max(1) as f32;
            pooled.iter_mut().for_each(|p| *p /= count);
            // As torch.nn.functional.normalize: divide by max(‖v‖, 1e-12).
            let norm = pooled.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
            pooled.iter_mut().for_each(|p| *p /= norm);
        }
        Ok(out)
    }
}

/// Defines `fn $name` that runs its body compiled for AVX-512 or AVX2 where the CPU has it. The
/// loops of GELU and layer norm are written to vectorise, and the portable build vectorises them
/// to SSE2's four lanes only. The results are the same bits every way: Rust neither reorders nor
/// fuses float operations, so only the width of the registers changes.
macro_rules! wide_fn {
    ($(#[$meta:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$meta])*
        fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn portable($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f")]
            fn avx512($($arg: $ty),*) {
                portable($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2")]
            fn avx2($($arg: $ty),*) {
                portable($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            if std::is_x86_feature_detected!("avx512f") {
                // SAFETY: AVX-512F was detected at run time just above.
                return unsafe { avx512($($arg),*) };
            }
            #[cfg(target_arch = "x86_64")]
            if std::is_x86_feature_detected!("avx2") {
                // SAFETY: AVX2 was detected at run time just above.
                return unsafe { avx2($($arg),*) };
            }
            portable($($arg),*)
        }
    };
}

wide_fn! {
    /// GELU (erf form) in place.
    fn gelu_values(values: &mut [f32]) {
        for v in values {
            *v = 0.5 * *v * (1.0 + erf(*v * std::f32::consts::FRAC_1_SQRT_2));
        }
    }
}

wide_fn! {
    /// Each row of `rows` plus its row of `residual`, then layer-normed.
    fn add_norm_rows(rows: &mut [f32], residual: &[f32], cols: usize, norm: &LayerNorm<CpuParam>) {
        for (row, res) in rows.chunks_exact_mut(cols).zip(residual.chunks_exact(cols)) {
            row.iter_mut().zip(res).for_each(|(v, r)| *v += r);
            layer_norm(row, norm);
        }
    }
}

#[inline(always)]
fn layer_norm(row: &mut [f32], norm: &LayerNorm<CpuParam>) {
    let n = row.len() as f32;
    let mean = lane_sum(row, |v| v) / n;
    let variance = lane_sum(row, |v| (v - mean) * (v - mean)) / n;
    let inv = 1.0 / (variance + norm.eps).sqrt();
    for ((v, w), b) in row.iter_mut().zip(norm.weight.iter()).zip(norm.bias.iter()) {
        *v = (*v - mean) * inv * w + b;
    }
}

/// The sum of `f` over `values` in 16 independent lanes, then across them: a single running sum is a
/// chain of dependent additions, one element at a time (Rust does not reassociate it).
#[inline(always)]
fn lane_sum(values: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    const LANES: usize = 16;
    let mut lanes = [0.0f32; LANES];
    let chunks = values.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (sum, v) in lanes.iter_mut().zip(chunk) {
            *sum += f(*v);
        }
    }
    lanes.iter().sum::<f32>() + rest.iter().map(|v| f(*v)).sum::<f32>()
}

/// erf for f32 as Eigen and XLA compute it: a rational approximation on [-4, 4] (beyond which erf
/// is ±1 in f32), within a few ulp of the correctly rounded value, and branch-free so the GELU
/// loop vectorises — libm's `erff` would be a call per element.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = x2 * -2.726_142_3e-10 + 2.770_681_4e-8;
    p = p * x2 + -2.101_024e-6;
    p = p * x2 + -5.692_506_4e-5;
    p = p * x2 + -7.349_906_3e-4;
    p = p * x2 + -2.954_6e-3;
    p = p * x2 + -1.609_603_3e-2;
    p *= x;
    let mut q = x2 * -1.456_607_2e-5 + -2.133_740_6e-4;
    q = q * x2 + -1.682_827e-3;
    q = q * x2 + -7.373_329_4e-3;
    q = q * x2 + -1.426_473_9e-2;
    p / q
}

#[cfg(test)]
mod tests {
    extern "C" {
        fn erf(x: f64) -> f64;
    }

    /// A lone text's attention split by heads between threads is, bit for bit, the attention
    /// of one thread (a text's vector must not depend on its batch mates, which decide whether
    /// it is embedded alone).
    #[test]
    // Each case's texts are a list of row ranges, one text among them at times.
    #[allow(clippy::single_range_in_vec_init)]
    fn attention_split_by_heads_is_the_same_bits() {
        use super::super::bert::Backend;
        use super::{CpuBackend, HostMatrix};
        for (hidden, heads, texts) in [
            (384, 12, vec![0..18]),
            (384, 12, vec![0..7, 7..40]),
            (160, 5, vec![0..30]),
            (96, 3, vec![0..1, 1..60]),
        ] {
            let rows = texts.last().unwrap().end;
            let qkv = HostMatrix {
                rows,
                cols: 3 * hidden,
                data: (0..rows * 3 * hidden)
                    .map(|i| ((i * 7919) % 2003) as f32 / 1001.0 - 1.0)
                    .collect(),
            };
            let alone = CpuBackend::new(1)
                .attention(&qkv, &texts, heads)
                .unwrap()
                .data;
            for threads in [2, 3] {
                let split = CpuBackend::new(threads)
                    .attention(&qkv, &texts, heads)
                    .unwrap()
                    .data;
                assert!(
                    split
                        .iter()
                        .map(|v| v.to_bits())
                        .eq(alone.iter().map(|v| v.to_bits())),
                    "{heads} heads of {hidden}, {threads} threads, texts {texts:?}"
                );
            }
        }
    }

    #[test]
    fn erf_matches_libm_to_float_precision() {
        let mut worst = 0.0f64;
        for i in -60_000..=60_000 {
            let x = i as f32 / 10_000.0;
            // SAFETY: libm's erf is a pure function of a double.
            let exact = unsafe { erf(x as f64) };
            worst = worst.max((super::erf(x) as f64 - exact).abs());
        }
        assert!(worst < 5e-7, "worst |erf error| {worst}");
    }
}
