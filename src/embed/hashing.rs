//! Deterministic feature hashing: every token, every `key` of a `key=value` token, and every pair of
//! adjacent tokens adds ±1 to one of `dim` buckets (FNV-1a picks the bucket and the sign). Texts that
//! share most of their words land close together; it knows nothing of meaning. It is the embedder
//! for installs without the MiniLM weights (`embedder.kind = "hashing"`), never a silent fallback.

use super::{EmbedError, Embedder, Embeddings};

pub struct HashingEmbedder {
    dim: usize,
}

impl HashingEmbedder {
    pub fn new(dim: usize) -> HashingEmbedder {
        HashingEmbedder { dim }
    }

    fn embed_one(&self, text: &str, out: &mut [f32]) {
        let tokens: Vec<&str> = text.split_whitespace().collect();
        let mut add = |feature: &[&str], weight: f32| {
            let h = fnv1a(feature);
            let bucket = (h % self.dim as u64) as usize;
            let sign = if h >> 63 == 0 { 1.0 } else { -1.0 };
            out[bucket] += sign * weight;
        };
        for (i, token) in tokens.iter().enumerate() {
            add(&[token], 1.0);
            if let Some((key, _)) = token.split_once('=') {
                add(&[key, "="], 0.5);
            }
            if let Some(next) = tokens.get(i + 1) {
                add(&[token, " ", next], 0.5);
            }
        }
        let norm = out.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            out.iter_mut().for_each(|x| *x /= norm);
        } else {
            // The empty text still needs a unit vector; give it a bucket of its own.
            out[0] = 1.0;
        }
    }
}

fn fnv1a(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

impl Embedder for HashingEmbedder {
    fn embed(&mut self, texts: &[&str]) -> Result<Embeddings, EmbedError> {
        let mut data = vec![0.0f32; texts.len() * self.dim];
        for (text, row) in texts.iter().zip(data.chunks_mut(self.dim)) {
            self.embed_one(text, row);
        }
        Ok(Embeddings {
            dim: self.dim,
            data,
        })
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn model_id(&self) -> String {
        format!("hashing-fnv1a-{}-v1", self.dim)
    }

    fn backend(&self) -> String {
        "cpu".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn deterministic_unit_vectors_that_respect_word_overlap() {
        let mut e = HashingEmbedder::new(384);
        let out = e
            .embed(&[
                "systemd unit nginx.service ActiveState=active SubState=running",
                "systemd unit nginx.service ActiveState=active SubState=running",
                "systemd unit nginx.service ActiveState=failed SubState=failed Result=exit-code",
                "login1 session new user=alice",
            ])
            .unwrap();
        assert_eq!(out.rows(), 4);
        for i in 0..4 {
            let n = cosine(out.row(i), out.row(i));
            assert!((n - 1.0).abs() < 1e-5, "row {i} has squared norm {n}");
        }
        assert_eq!(out.row(0), out.row(1));
        let related = cosine(out.row(0), out.row(2));
        let unrelated = cosine(out.row(0), out.row(3));
        assert!(
            related > unrelated + 0.2,
            "related {related} vs unrelated {unrelated}"
        );
        e.health().unwrap();
    }
}
