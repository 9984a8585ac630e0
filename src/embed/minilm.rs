//! all-MiniLM-L6-v2 as sentence-transformers runs it: WordPiece tokens → BERT encoder → mean
//! pooling over the tokens → L2 normalisation. Generic over the [`Backend`] doing the arithmetic.

use std::path::Path;

use super::bert::{Backend, Bert, Packed};
use super::cpu::CpuBackend;
use super::model::ModelFiles;
use super::tokenize::WordPiece;
use super::{EmbedError, Embedder, Embeddings};

/// Tokens per forward pass: bounds the activations (the widest is `tokens × 1536` floats, 48 MiB
/// here) whatever the batch size; a batch with more tokens runs in several passes.
const MAX_TOKENS_PER_PASS: usize = 8192;

pub struct MiniLm<B: Backend> {
    tokenizer: WordPiece,
    bert: Bert<B::Param>,
    backend: B,
    model_id: String,
    backend_name: String,
}

impl MiniLm<CpuBackend> {
    /// Loads the model in `dir` for the CPU; `threads` = 0 uses every core available.
    pub fn cpu(dir: &Path, threads: usize) -> Result<MiniLm<CpuBackend>, EmbedError> {
        let backend = CpuBackend::new(threads);
        let name = format!("cpu ({} threads, OpenBLAS)", backend.threads());
        MiniLm::load(dir, backend, name)
    }
}

impl<B: Backend> MiniLm<B> {
    pub fn load(dir: &Path, mut backend: B, backend_name: String) -> Result<MiniLm<B>, EmbedError> {
        let files = ModelFiles::open(dir)?;
        let tokenizer = WordPiece::load(dir, files.config.max_seq_len)?;
        let bert = Bert::load(&mut backend, &files.config, &files.tensors()?)?;
        Ok(MiniLm {
            tokenizer,
            bert,
            backend,
            model_id: files.model_id.clone(),
            backend_name,
        })
    }

    /// The token ids the model sees for `text` (`[CLS] … [SEP]`, truncated).
    pub fn token_ids(&self, text: &str) -> Result<Vec<u32>, EmbedError> {
        self.tokenizer.encode(text)
    }
}

impl<B: Backend + Send> Embedder for MiniLm<B>
where
    B::Param: Send,
{
    fn embed(&mut self, texts: &[&str]) -> Result<Embeddings, EmbedError> {
        let dim = self.bert.config.hidden;
        let mut data = Vec::with_capacity(texts.len() * dim);
        let mut pass = Packed::default();
        for text in texts {
            let ids = self.tokenizer.encode(text)?;
            if pass.tokens() + ids.len() > MAX_TOKENS_PER_PASS && !pass.texts.is_empty() {
                data.extend(self.bert.forward(&mut self.backend, &pass)?);
                pass = Packed::default();
            }
            pass.push(&ids);
        }
        if !pass.texts.is_empty() {
            data.extend(self.bert.forward(&mut self.backend, &pass)?);
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
