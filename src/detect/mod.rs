//! Scoring against the baseline: a FAISS index of the vectors of events judged normal, owned by the
//! detector thread (FAISS indexes are not `Send`; the thread builds its own).
//!
//! Score = distance to the nearest baseline vector, `‖a − b‖² / 2`, which for unit vectors is
//! `1 − cos(a, b)`: 0 for a text seen before, 1 for an unrelated one. An event scoring above
//! `detector.threshold` is an anomaly and stays out of the baseline, so a recurring fault keeps
//! alerting; every other event joins it (each distinct text once, with a count).

use std::collections::HashMap;

use faiss::index::IndexImpl;
use faiss::{index_factory, Idx, Index, MetricType};

use crate::config::{DetectorConfig, EMBEDDING_DIM};
use crate::embed::Embeddings;
use crate::event::{Event, Judged, Verdict};

#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error("FAISS index {description:?}: {source}")]
    Faiss {
        description: String,
        #[source]
        source: faiss::error::Error,
    },
    #[error("{scored} events to score but {rows} vectors")]
    VectorCount { scored: usize, rows: usize },
}

/// A batch the detector could not score, handed back whole so the caller can still record it.
#[derive(Debug)]
pub struct Unjudged {
    pub error: DetectError,
    pub events: Vec<Event>,
}

/// The factory string FAISS is given: ids are always ours, so the index is wrapped in `IDMap2`.
fn full_description(index: &str) -> String {
    if index.starts_with("IDMap") {
        index.to_owned()
    } else {
        format!("IDMap2,{index}")
    }
}

/// Checks a `detector.index` value: FAISS must build it for 384-d vectors, and (until the
/// IVF-PQ lifecycle lands) it must need no training.
pub fn check_factory(index: &str) -> Result<(), String> {
    if index.trim().is_empty() {
        return Err("must be a FAISS factory string such as Flat".into());
    }
    let built = index_factory(EMBEDDING_DIM, full_description(index), MetricType::L2)
        .map_err(|e| format!("FAISS cannot build it: {e}"))?;
    if !built.is_trained() {
        return Err("must be an index that needs no training (e.g. Flat, HNSW32); trained IVF-PQ is not supported yet".into());
    }
    Ok(())
}

pub struct Detector {
    index: IndexImpl,
    description: String,
    k: usize,
    threshold: f32,
    warmup_events: u64,
    /// Distinct baseline text → its id in the index.
    ids_by_text: HashMap<String, u64>,
    /// How many events each baseline id stands for.
    counts: Vec<u64>,
    /// Events that joined the baseline, repeats included.
    baseline_events: u64,
}

impl Detector {
    pub fn new(config: &DetectorConfig) -> Result<Detector, DetectError> {
        let description = full_description(&config.index);
        let index =
            index_factory(EMBEDDING_DIM, &description, MetricType::L2).map_err(|source| {
                DetectError::Faiss {
                    description: description.clone(),
                    source,
                }
            })?;
        Ok(Detector {
            index,
            description,
            k: config.k,
            threshold: config.threshold,
            warmup_events: config.warmup_events,
            ids_by_text: HashMap::new(),
            counts: Vec::new(),
            baseline_events: 0,
        })
    }

    pub fn description(&self) -> &str {
        &self.description
    }

    /// Distinct vectors in the index.
    pub fn baseline_len(&self) -> u64 {
        self.index.ntotal()
    }

    /// Judges a batch. `vectors` holds one row per event whose kind is scored, in order; the other
    /// events pass through as `NotScored`. Each event is judged against the baseline as it stood
    /// before the batch, plus exact repeats of texts that joined it earlier in the same batch.
    /// Every check that can fail runs before the events are consumed, so a failure hands them back.
    pub fn judge(
        &mut self,
        events: Vec<Event>,
        vectors: &Embeddings,
    ) -> Result<Vec<Judged>, Unjudged> {
        let scored = events.iter().filter(|e| e.kind.is_scored()).count();
        let mut neighbours_per_row = match self.nearest(scored, vectors) {
            Ok(n) => n,
            Err(error) => return Err(Unjudged { error, events }),
        };

        let mut judged = Vec::with_capacity(events.len());
        let mut row = 0;
        for event in events {
            if !event.kind.is_scored() {
                judged.push(Judged::unscored(event));
                continue;
            }
            let mut neighbours = std::mem::take(&mut neighbours_per_row[row]);
            if let Some(&id) = self.ids_by_text.get(&event.text) {
                if neighbours.first().is_none_or(|&(first, _)| first != id) {
                    neighbours.insert(0, (id, 0.0));
                    neighbours.truncate(self.k);
                }
            }
            let score = neighbours.first().map_or(1.0, |&(_, d)| d.max(0.0));
            let verdict = if self.baseline_events < self.warmup_events {
                Verdict::Warmup
            } else if score > self.threshold {
                Verdict::Anomaly
            } else {
                Verdict::Normal
            };
            if verdict != Verdict::Anomaly {
                // The verdict stands either way; a vector FAISS refused only misses the baseline.
                if let Err(e) = self.join_baseline(&event.text, vectors.row(row)) {
                    tracing::error!(error = %e, text = %event.text, "could not add the event to the baseline");
                }
            }
            judged.push(Judged {
                event,
                score: Some(score),
                verdict,
                neighbours,
            });
            row += 1;
        }
        Ok(judged)
    }

    /// The `k` nearest baseline entries of each of the `scored` rows of `vectors`.
    fn nearest(
        &mut self,
        scored: usize,
        vectors: &Embeddings,
    ) -> Result<Vec<Vec<(u64, f32)>>, DetectError> {
        if scored != vectors.rows() {
            return Err(DetectError::VectorCount {
                scored,
                rows: vectors.rows(),
            });
        }
        let mut neighbours_per_row: Vec<Vec<(u64, f32)>> = vec![Vec::new(); scored];
        if scored > 0 && self.index.ntotal() > 0 {
            let k = self.k.min(self.index.ntotal() as usize);
            let found =
                self.index
                    .search(&vectors.data, k)
                    .map_err(|source| DetectError::Faiss {
                        description: self.description.clone(),
                        source,
                    })?;
            for (row, neighbours) in neighbours_per_row.iter_mut().enumerate() {
                for j in 0..k {
                    if let Some(id) = found.labels[row * k + j].get() {
                        neighbours.push((id, found.distances[row * k + j] / 2.0));
                    }
                }
            }
        }
        Ok(neighbours_per_row)
    }

    fn join_baseline(&mut self, text: &str, vector: &[f32]) -> Result<(), DetectError> {
        self.baseline_events += 1;
        if let Some(&id) = self.ids_by_text.get(text) {
            self.counts[id as usize] += 1;
            return Ok(());
        }
        let id = self.counts.len() as u64;
        self.index
            .add_with_ids(vector, &[Idx::new(id)])
            .map_err(|source| DetectError::Faiss {
                description: self.description.clone(),
                source,
            })?;
        self.counts.push(1);
        self.ids_by_text.insert(text.to_owned(), id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embed::{Embedder, HashingEmbedder};
    use crate::event::Source;

    fn config(warmup_events: i64) -> DetectorConfig {
        DetectorConfig {
            index: "Flat".into(),
            k: 3,
            threshold: 0.25,
            warmup_events: warmup_events as u64,
        }
    }

    fn judge(detector: &mut Detector, texts: &[&str]) -> Vec<Judged> {
        let vectors = HashingEmbedder::new(384).embed(texts).unwrap();
        let events = texts
            .iter()
            .map(|t| Event::observed(Source::Systemd, t.to_string(), Default::default()))
            .collect();
        detector.judge(events, &vectors).unwrap()
    }

    #[test]
    fn repeats_score_zero_and_novel_faults_stay_out_of_the_baseline() {
        let mut detector = Detector::new(&config(2)).unwrap();
        let normal = "systemd unit nginx.service ActiveState=active SubState=running";
        let fault =
            "systemd unit postgresql.service ActiveState=failed SubState=failed Result=oom-kill";
        let warm = judge(&mut detector, &[normal, normal]);
        assert!(warm.iter().all(|j| j.verdict == Verdict::Warmup));
        assert_eq!(
            detector.baseline_len(),
            1,
            "identical texts are stored once"
        );

        let out = judge(&mut detector, &[normal, fault]);
        assert_eq!(out[0].verdict, Verdict::Normal);
        assert_eq!(out[0].score, Some(0.0));
        assert_eq!(out[1].verdict, Verdict::Anomaly, "score {:?}", out[1].score);
        assert_eq!(detector.baseline_len(), 1);

        let again = judge(&mut detector, &[fault]);
        assert_eq!(
            again[0].verdict,
            Verdict::Anomaly,
            "a recurring fault keeps alerting"
        );
    }

    #[test]
    fn factory_strings_are_checked() {
        assert!(check_factory("Flat").is_ok());
        assert!(check_factory("NoSuchIndex").unwrap_err().contains("FAISS"));
        assert!(check_factory("IVF16,PQ8").unwrap_err().contains("training"));
        assert!(check_factory("").is_err());
    }
}
