//! all-MiniLM-L6-v2 as sentence-transformers runs it: WordPiece tokens → BERT encoder → mean
//! pooling over the tokens → L2 normalisation. Generic over the [`Backend`] doing the arithmetic.

use std::path::Path;

use super::bert::{Backend, Bert, Packed};
use super::cpu::CpuBackend;
use super::model::ModelFiles;
use super::tokenize::WordPiece;
use super::{EmbedError, Embedder, Embeddings};
use crate::config::Precision;

/// The model and the workers that run it. Each worker is a backend of its own over the shared
/// weights; a pass with several texts is split between them by token count and run in parallel,
/// a pass with one text runs on the first worker with every thread.
pub struct MiniLm<B: Backend> {
    tokenizer: WordPiece,
    bert: Bert<B::Param>,
    workers: Vec<B>,
    model_id: String,
    backend_name: String,
}

impl MiniLm<CpuBackend> {
    /// Loads the model in `dir` for the CPU with one worker per thread; `threads` = 0 uses every
    /// core this process may run on.
    ///
    /// `precision` chooses the matrix products: `Auto` is bf16 where the CPU has AMX, or is AMD's
    /// with AVX512-BF16 (`auto_is_bf16`).
    /// On bf16 the model id gains `+bf16`, so a snapshot of f32 vectors is not mixed with them.
    pub fn cpu(
        dir: &Path,
        threads: usize,
        precision: Precision,
    ) -> Result<MiniLm<CpuBackend>, EmbedError> {
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            threads
        };
        let bf16 = match precision {
            Precision::Fp32 => false,
            Precision::Auto => auto_is_bf16(super::bf16::kernel(), super::bf16::is_amd()),
            Precision::Bf16 if super::bf16::available() => true,
            Precision::Bf16 => {
                return Err(EmbedError::DeviceUnavailable(
                    "embedder.precision = \"bf16\" needs a CPU with AVX512-BF16, and this one \
                     has none: use \"auto\" or \"fp32\""
                        .into(),
                ))
            }
        };
        super::blas::set_threads(1);
        let (workers, products) = if bf16 {
            let workers = (0..threads).map(|_| CpuBackend::bf16(1)).collect();
            match super::bf16::kernel() {
                Some(super::bf16::Kernel::Tiles) => (workers, "bf16 AMX"),
                _ => (workers, "bf16 AVX512-BF16"),
            }
        } else {
            let workers = (0..threads).map(|_| CpuBackend::new(1)).collect();
            match super::fp32::Isa::detect() {
                Some(super::fp32::Isa::Avx512) => (workers, "fp32 AVX-512"),
                Some(super::fp32::Isa::Avx2) => (workers, "fp32 AVX2"),
                None => (workers, "fp32 OpenBLAS"),
            }
        };
        let mut model = MiniLm::load(dir, workers, format!("cpu ({threads} threads, {products})"))?;
        // The two bf16 kernels sum in different orders (AMX from the bias up), so their vectors
        // differ in the last bits: a snapshot made by one is not taken for the other's. The two
        // fp32 products (ours on AVX-512 or AVX2, OpenBLAS) keep the plain id: their vectors agree to a
        // cosine of 1.000000 with sentence-transformers' on every golden, as OpenBLAS's own
        // kernels on different CPUs always did.
        match super::bf16::kernel() {
            Some(super::bf16::Kernel::Tiles) if bf16 => model.model_id.push_str("+bf16-amx"),
            _ if bf16 => model.model_id.push_str("+bf16"),
            _ => {}
        }
        Ok(model)
    }
}

/// What `embedder.precision = "auto"` picks for the bf16 kernel this CPU has: bf16 on AMX tiles,
/// which beat fp32 at every batch size measured; bf16 on AVX-512 registers on an AMD CPU (Zen 4),
/// where it ran 1.7–1.8× our fp32 kernel at batch 1 and 64; fp32 on an Intel CPU with
/// AVX512-BF16 but no AMX, where the register kernel beat fp32 for a lone text but lost in
/// batches (benches/README.md), the daemon's batches being what matter under load; and fp32
/// without AVX512-BF16.
fn auto_is_bf16(kernel: Option<super::bf16::Kernel>, amd: bool) -> bool {
    match kernel {
        Some(super::bf16::Kernel::Tiles) => true,
        Some(super::bf16::Kernel::Vectors) => amd,
        None => false,
    }
}

impl<B: Backend> MiniLm<B> {
    /// Loads the weights through the first worker; every worker computes with them.
    pub fn load(
        dir: &Path,
        workers: Vec<B>,
        backend_name: String,
    ) -> Result<MiniLm<B>, EmbedError> {
        MiniLm::from_files(&ModelFiles::open(dir)?, workers, backend_name)
    }

    /// As [`MiniLm::load`], from files already opened.
    pub fn from_files(
        files: &ModelFiles,
        mut workers: Vec<B>,
        backend_name: String,
    ) -> Result<MiniLm<B>, EmbedError> {
        let dir = files.dir.as_path();
        let tokenizer = WordPiece::load(dir, files.config.max_seq_len)?;
        if tokenizer.vocab_size() > files.config.vocab_size {
            return Err(EmbedError::ModelInvalid {
                path: dir.join("tokenizer.json"),
                reason: format!(
                    "its vocabulary has {} tokens but config.json's vocab_size is {}: \
                     the two files belong to different models",
                    tokenizer.vocab_size(),
                    files.config.vocab_size
                ),
            });
        }
        let first = workers.first_mut().ok_or_else(|| {
            EmbedError::DeviceUnavailable("an embedder needs at least one worker".into())
        })?;
        let bert = Bert::load(first, &files.config, &files.tensors()?)?;
        Ok(MiniLm {
            tokenizer,
            bert,
            workers,
            model_id: files.model_id.clone(),
            backend_name,
        })
    }

    /// The backends, one per worker.
    pub fn workers(&self) -> &[B] {
        &self.workers
    }

    /// The token ids the model sees for `text` (`[CLS] … [SEP]`, truncated).
    pub fn token_ids(&self, text: &str) -> Result<Vec<u32>, EmbedError> {
        self.tokenizer.encode(text)
    }
}

impl<B: Backend + Send> MiniLm<B>
where
    B::Param: Send + Sync,
{
    /// Runs one pass of `encoded` texts: split between the workers by token count.
    fn pass(&mut self, encoded: &[Vec<u32>], out: &mut Vec<f32>) -> Result<(), EmbedError> {
        let groups = split_by_tokens(encoded, self.workers.len());
        let bert = &self.bert;
        if groups.len() == 1 {
            let all = self.workers.len();
            let worker = &mut self.workers[0];
            worker.set_threads(all);
            out.extend(bert.forward(worker, &pack(encoded))?);
            return Ok(());
        }
        let results: Vec<Result<Vec<f32>, EmbedError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = self
                .workers
                .iter_mut()
                .zip(&groups)
                .map(|(worker, group)| {
                    let batch = pack(&encoded[group.clone()]);
                    scope.spawn(move || {
                        worker.set_threads(1);
                        bert.forward(worker, &batch)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("an embedding worker panicked"))
                .collect()
        });
        for result in results {
            out.extend(result?);
        }
        Ok(())
    }
}

fn pack(encoded: &[Vec<u32>]) -> Packed {
    let mut packed = Packed::default();
    for ids in encoded {
        packed.push(ids);
    }
    packed
}

/// Cuts `encoded` into at most `parts` contiguous, non-empty runs of about equal token counts.
fn split_by_tokens(encoded: &[Vec<u32>], parts: usize) -> Vec<std::ops::Range<usize>> {
    let parts = parts.clamp(1, encoded.len().max(1));
    let total: usize = encoded.iter().map(Vec::len).sum();
    let mut runs = Vec::with_capacity(parts);
    let (mut start, mut acc) = (0, 0);
    for (i, ids) in encoded.iter().enumerate() {
        acc += ids.len();
        let remaining_texts = encoded.len() - i - 1;
        let remaining_runs = parts - runs.len() - 1;
        let due = acc * parts >= total * (runs.len() + 1);
        if remaining_runs > 0 && (due || remaining_texts == remaining_runs) {
            runs.push(start..i + 1);
            start = i + 1;
        }
    }
    if start < encoded.len() {
        runs.push(start..encoded.len());
    }
    runs
}

impl<B: Backend + Send> Embedder for MiniLm<B>
where
    B::Param: Send + Sync,
{
    fn embed(&mut self, texts: &[&str]) -> Result<Embeddings, EmbedError> {
        let dim = self.bert.config.hidden;
        let encoded: Vec<Vec<u32>> = texts
            .iter()
            .map(|t| self.tokenizer.encode(t))
            .collect::<Result<_, _>>()?;
        let mut data = Vec::with_capacity(texts.len() * dim);
        let budget = self.workers[0].max_tokens_per_pass() * self.workers.len();
        let (mut start, mut tokens) = (0, 0);
        for (i, ids) in encoded.iter().enumerate() {
            if tokens + ids.len() > budget && i > start {
                self.pass(&encoded[start..i], &mut data)?;
                (start, tokens) = (i, 0);
            }
            tokens += ids.len();
        }
        if start < encoded.len() {
            self.pass(&encoded[start..], &mut data)?;
        }
        Ok(Embeddings { dim, data })
    }

    fn dim(&self) -> usize {
        self.bert.config.hidden
    }

    fn model_id(&self) -> String {
        self.model_id.clone()
    }

    fn backend(&self) -> String {
        self.backend_name.clone()
    }
}

#[cfg(test)]
mod tests {
    use crate::embed::bf16::Kernel;

    #[test]
    fn auto_takes_bf16_on_amx_and_on_amds_avx512_bf16() {
        for amd in [false, true] {
            assert!(super::auto_is_bf16(Some(Kernel::Tiles), amd));
            assert!(!super::auto_is_bf16(None, amd));
        }
        assert!(super::auto_is_bf16(Some(Kernel::Vectors), true));
        assert!(!super::auto_is_bf16(Some(Kernel::Vectors), false));
        // This machine's vendor, as the detection reads it, against the kernel's own record.
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        if let Some(line) = cpuinfo.lines().find(|l| l.starts_with("vendor_id")) {
            assert_eq!(
                crate::embed::bf16::is_amd(),
                line.ends_with("AuthenticAMD"),
                "{line}"
            );
        }
    }

    #[test]
    fn split_by_tokens_balances_and_covers_every_text() {
        let texts = |lens: &[usize]| lens.iter().map(|&n| vec![0u32; n]).collect::<Vec<_>>();
        assert_eq!(
            super::split_by_tokens(&texts(&[10, 10, 10, 10]), 2),
            [0..2, 2..4]
        );
        assert_eq!(
            super::split_by_tokens(&texts(&[100, 1, 1, 1]), 2),
            [0..1, 1..4]
        );
        assert_eq!(super::split_by_tokens(&texts(&[5]), 4), vec![(0..1)]);
        assert_eq!(
            super::split_by_tokens(&texts(&[1, 1, 1]), 3),
            [0..1, 1..2, 2..3]
        );
        assert_eq!(
            super::split_by_tokens(&texts(&[1, 1, 100]), 3),
            [0..1, 1..2, 2..3]
        );
        assert!(super::split_by_tokens(&texts(&[]), 2).is_empty());
    }
}
