//! Scoring against the baseline: a FAISS index of the vectors of events judged normal, owned by the
//! detector thread (FAISS indexes are not `Send`; the thread builds its own).
//!
//! Score = `d + w / (1 + ln n)`: `d` is the distance to the nearest baseline vector,
//! `‖a − b‖² / 2`, which for unit vectors is `1 − cos(a, b)` (0 for a text seen before, about 1 for
//! an unrelated one); `n` is how many events that nearest text stands for and `w` is
//! `detector.rarity_weight`, so a text seen once before still scores above a heartbeat seen
//! 10,000 times. An event scoring above the threshold (see [`calibration`]) is an anomaly and
//! stays out of the baseline, so a recurring fault keeps alerting; every other event joins it
//! (each distinct text once, with a count).

mod calibration;

pub use calibration::Calibrator;

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

/// Distinct baseline texts before scores count towards calibration: against a nearly empty
/// baseline every text looks new.
const CALIBRATION_MIN_BASELINE: u64 = 32;

pub struct Detector {
    index: IndexImpl,
    description: String,
    k: usize,
    rarity_weight: f32,
    calibrator: Calibrator,
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
            rarity_weight: config.rarity_weight,
            calibrator: Calibrator::new(
                config.calibration_quantile,
                config.threshold,
                config.calibration_window,
            ),
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

    /// The score above which an event is an anomaly, as it stands now.
    pub fn threshold(&self) -> f32 {
        self.calibrator.threshold()
    }

    /// Adds known-normal history (an imported baseline): each text is scored against the
    /// baseline as it stood just before it, including the texts before it in this call (one
    /// search per text: batch searches would score a burst of new texts against none of each
    /// other and inflate the calibration), the score feeds the calibration, and the text joins.
    /// Returns the scores.
    pub fn learn(&mut self, texts: &[&str], vectors: &Embeddings) -> Result<Vec<f32>, DetectError> {
        if texts.len() != vectors.rows() {
            return Err(DetectError::VectorCount {
                scored: texts.len(),
                rows: vectors.rows(),
            });
        }
        let mut scores = Vec::with_capacity(texts.len());
        for (row, text) in texts.iter().enumerate() {
            let one = Embeddings {
                dim: vectors.dim,
                data: vectors.row(row).to_vec(),
            };
            let found = self.nearest(1, &one)?.pop().unwrap_or_default();
            let neighbours = self.with_exact_repeat(text, found);
            let score = self.score(&neighbours);
            self.observe(score);
            self.join_baseline(text, vectors.row(row))?;
            scores.push(score);
        }
        Ok(scores)
    }

    /// A text already in the baseline is its own nearest neighbour at distance 0, also when it
    /// joined earlier in the same batch (after the batch's search ran).
    fn with_exact_repeat(&self, text: &str, mut neighbours: Vec<(u64, f32)>) -> Vec<(u64, f32)> {
        if let Some(&id) = self.ids_by_text.get(text) {
            if neighbours.first().is_none_or(|&(first, _)| first != id) {
                neighbours.insert(0, (id, 0.0));
                neighbours.truncate(self.k);
            }
        }
        neighbours
    }

    fn score(&self, neighbours: &[(u64, f32)]) -> f32 {
        match neighbours.first() {
            None => 1.0 + self.rarity_weight,
            Some(&(id, distance)) => {
                let count = self.counts.get(id as usize).copied().unwrap_or(1).max(1);
                distance.max(0.0) + self.rarity_weight / (1.0 + (count as f32).ln())
            }
        }
    }

    fn observe(&mut self, score: f32) {
        if self.index.ntotal() >= CALIBRATION_MIN_BASELINE {
            self.calibrator.observe(score);
        }
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
            let neighbours =
                self.with_exact_repeat(&event.text, std::mem::take(&mut neighbours_per_row[row]));
            let score = self.score(&neighbours);
            let verdict = if self.baseline_events < self.warmup_events {
                Verdict::Warmup
            } else if score > self.calibrator.threshold() {
                Verdict::Anomaly
            } else {
                Verdict::Normal
            };
            if verdict != Verdict::Anomaly {
                self.observe(score);
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
            rarity_weight: 0.0,
            calibration_quantile: 0.0,
            calibration_window: 1000,
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
