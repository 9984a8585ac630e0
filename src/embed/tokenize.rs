//! WordPiece tokenization exactly as sentence-transformers does it: the model's own
//! `tokenizer.json` (BERT normaliser with lower-casing, BERT pre-tokeniser, WordPiece, the
//! `[CLS] … [SEP]` template), truncated at the model's `max_seq_length` and never padded —
//! `tokenizer.json` itself says truncate at 128 and pad to 128, which sentence-transformers overrides.

use std::path::Path;

use tokenizers::{Tokenizer, TruncationParams};

use super::EmbedError;

pub struct WordPiece {
    inner: Tokenizer,
}

impl WordPiece {
    pub fn load(dir: &Path, max_seq_len: usize) -> Result<WordPiece, EmbedError> {
        let path = dir.join("tokenizer.json");
        let invalid = |reason: String| EmbedError::ModelInvalid {
            path: path.clone(),
            reason,
        };
        let mut inner = Tokenizer::from_file(&path).map_err(|e| invalid(e.to_string()))?;
        inner.with_padding(None);
        inner
            .with_truncation(Some(TruncationParams {
                max_length: max_seq_len,
                ..TruncationParams::default()
            }))
            .map_err(|e| invalid(format!("cannot truncate at {max_seq_len}: {e}")))?;
        Ok(WordPiece { inner })
    }

    /// Tokens the vocabulary holds, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Token ids of one text, `[CLS]` and `[SEP]` included.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, EmbedError> {
        let encoding = self
            .inner
            .encode(text, true)
            .map_err(|e| EmbedError::Tokenizer(e.to_string()))?;
        Ok(encoding.get_ids().to_vec())
    }
}
