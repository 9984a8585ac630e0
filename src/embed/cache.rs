//! The embedding cache: infrastructure events repeat (the same unit fails the same way, the same
//! heartbeat every minute), so a vector is computed once per distinct canonical text and then
//! looked up. Keyed by the first 128 bits of the text's SHA-256, least recently used evicted first.

use std::num::NonZeroUsize;

use sha2::{Digest, Sha256};

use super::{EmbedError, Embedder, Embeddings};

type Key = [u8; 16];

pub struct EmbeddingCache {
    entries: Option<lru::LruCache<Key, Box<[f32]>>>,
    hits: u64,
    misses: u64,
}

/// What one batch found in the cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Lookups {
    pub hits: u64,
    pub misses: u64,
}

impl EmbeddingCache {
    /// Holds at most `capacity` vectors; 0 turns the cache off (every text is embedded).
    pub fn new(capacity: usize) -> EmbeddingCache {
        EmbeddingCache {
            entries: NonZeroUsize::new(capacity).map(lru::LruCache::new),
            hits: 0,
            misses: 0,
        }
    }

    /// Embeds `texts` through the cache: only texts not cached are given to `embedder`, each
    /// distinct text once even when it repeats within the batch.
    pub fn embed(
        &mut self,
        embedder: &mut dyn Embedder,
        texts: &[&str],
    ) -> Result<(Embeddings, Lookups), EmbedError> {
        let Some(entries) = self.entries.as_mut() else {
            let out = embedder.embed(texts)?;
            self.misses += texts.len() as u64;
            return Ok((
                out,
                Lookups {
                    hits: 0,
                    misses: texts.len() as u64,
                },
            ));
        };
        let dim = embedder.dim();
        let keys: Vec<Key> = texts.iter().map(|t| key(t)).collect();
        let mut missing: Vec<usize> = Vec::new(); // index of the first text with each missing key
        let mut first_of: std::collections::HashMap<Key, usize> = Default::default();
        for (i, k) in keys.iter().enumerate() {
            if !entries.contains(k) && !first_of.contains_key(k) {
                first_of.insert(*k, missing.len());
                missing.push(i);
            }
        }
        let fresh = if missing.is_empty() {
            None
        } else {
            let miss_texts: Vec<&str> = missing.iter().map(|&i| texts[i]).collect();
            Some(embedder.embed(&miss_texts)?)
        };
        let mut data = Vec::with_capacity(texts.len() * dim);
        for k in &keys {
            match entries.get(k) {
                Some(v) => data.extend_from_slice(v),
                None => {
                    let fresh = fresh.as_ref().expect("a missing key was embedded");
                    data.extend_from_slice(fresh.row(first_of[k]));
                }
            }
        }
        if let Some(fresh) = &fresh {
            for (slot, &i) in missing.iter().enumerate() {
                entries.put(keys[i], fresh.row(slot).into());
            }
        }
        let lookups = Lookups {
            hits: (texts.len() - missing.len()) as u64,
            misses: missing.len() as u64,
        };
        self.hits += lookups.hits;
        self.misses += lookups.misses;
        Ok((Embeddings { dim, data }, lookups))
    }

    pub fn len(&self) -> usize {
        self.entries.as_ref().map_or(0, |e| e.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Hits over lookups since start; 0 before the first lookup.
    pub fn hit_rate(&self) -> f64 {
        let total = self.hits + self.misses;
        if total == 0 {
            0.0
        } else {
            self.hits as f64 / total as f64
        }
    }
}

fn key(text: &str) -> Key {
    let digest = Sha256::digest(text.as_bytes());
    let mut k = [0u8; 16];
    k.copy_from_slice(&digest[..16]);
    k
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embed::HashingEmbedder;

    /// Counts the texts it is asked to embed.
    struct Counting {
        inner: HashingEmbedder,
        embedded: Vec<String>,
    }

    impl Embedder for Counting {
        fn embed(&mut self, texts: &[&str]) -> Result<Embeddings, EmbedError> {
            self.embedded.extend(texts.iter().map(|t| t.to_string()));
            self.inner.embed(texts)
        }
        fn dim(&self) -> usize {
            self.inner.dim()
        }
        fn model_id(&self) -> String {
            self.inner.model_id()
        }
        fn backend(&self) -> String {
            self.inner.backend()
        }
    }

    #[test]
    fn repeats_are_embedded_once_and_rows_stay_in_order() {
        let mut counting = Counting {
            inner: HashingEmbedder::new(16),
            embedded: vec![],
        };
        let mut cache = EmbeddingCache::new(2);
        let batch = ["a up", "b down", "a up", "c gone"];
        let (out, lookups) = cache.embed(&mut counting, &batch).unwrap();
        assert_eq!(counting.embedded, ["a up", "b down", "c gone"]);
        assert_eq!(lookups, Lookups { hits: 1, misses: 3 });
        let direct = HashingEmbedder::new(16).embed(&batch).unwrap();
        assert_eq!(out, direct);
        // Capacity 2: "a up" was evicted, "b down" and "c gone" remain.
        counting.embedded.clear();
        let (out, lookups) = cache.embed(&mut counting, &["c gone", "a up"]).unwrap();
        assert_eq!(counting.embedded, ["a up"]);
        assert_eq!(lookups, Lookups { hits: 1, misses: 1 });
        assert_eq!(
            out,
            HashingEmbedder::new(16).embed(&["c gone", "a up"]).unwrap()
        );
        assert_eq!(cache.len(), 2);
        assert!((cache.hit_rate() - 2.0 / 6.0).abs() < 1e-9);
    }

    #[test]
    fn capacity_zero_embeds_everything() {
        let mut counting = Counting {
            inner: HashingEmbedder::new(8),
            embedded: vec![],
        };
        let mut cache = EmbeddingCache::new(0);
        cache.embed(&mut counting, &["x", "x"]).unwrap();
        assert_eq!(counting.embedded, ["x", "x"]);
        assert_eq!(cache.hit_rate(), 0.0);
    }
}
