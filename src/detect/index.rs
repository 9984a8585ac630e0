//! The FAISS index over the baseline's vectors and its lifecycle. It starts exact
//! (`IDMap2,Flat`); once enough distinct vectors exist, the configured trained index (by default
//! `IVF{nlist},SQ8` sized from the data) is trained on a snapshot of them in a background thread,
//! filled, and swapped in between two batches, so scoring never waits for training. It is trained
//! again in the same way when the baseline has grown by `detector.retrain_growth` since, or when
//! the data has drifted away from the IVF lists: once `detector.retrain_drift` of the texts added
//! since training lie farther from every list centre than 90% of the training texts did.
//!
//! The index only finds candidates: the detector re-scores them exactly against the kept vectors,
//! so product quantisation costs recall, never accuracy of the reported distance.

use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::Instant;

use faiss::index::autotune::ParameterSpace;
use faiss::index::IndexImpl;
use faiss::{index_factory, Idx, Index, MetricType};
use serde::{Deserialize, Serialize};
use tracing::{error, info, warn};

use super::baseline::{Baseline, SharedRows};
use super::gpu::SearchPlace;
use super::{DetectError, DIM};
use crate::config::{DetectorConfig, EMBEDDING_DIM};

/// The exact index the baseline starts in.
pub const EXACT: &str = "IDMap2,Flat";

/// `detector.index` value that sizes the trained index from the data.
pub const AUTO: &str = "auto";

/// Training sample: at most this many vectors per IVF list (FAISS's own cap is 256).
const TRAIN_POINTS_PER_LIST: usize = 64;
/// …and at least this many in all (a PQ index's 256 centroids per sub-quantiser want ~40 points
/// each).
const TRAIN_MIN_POINTS: usize = 10_240;

/// Training texts whose coarse residual sets the drift reference (a quantile; more add nothing).
const DRIFT_REFERENCE_POINTS: usize = 10_000;
/// The residual quantile of the training texts new texts are compared with.
const DRIFT_REFERENCE_QUANTILE: f64 = 0.9;
/// Texts added since training before their drift share is trusted (at least; or a tenth of
/// the training set, whichever is more).
const DRIFT_MIN_ADDED: u64 = 1000;

extern "C" {
    /// libgomp, which the FAISS build links.
    fn omp_set_num_threads(n: std::ffi::c_int);
}

/// FAISS parallelises with OpenMP, whose idle threads spin; next to the embedder's workers (one
/// per core) that spinning costs more than it gains, so FAISS runs on the calling thread. The
/// setting is per calling thread, hence a call before each use.
fn faiss_on_this_thread_only() {
    // SAFETY: sets the calling thread's OpenMP thread count; no pointers, no shared state.
    unsafe { omp_set_num_threads(1) }
}

/// The factory string FAISS is given: ids are always ours, so the index is wrapped in `IDMap2`.
pub fn full_description(index: &str) -> String {
    if index.starts_with("IDMap") {
        index.to_owned()
    } else {
        format!("IDMap2,{index}")
    }
}

/// `IVF{nlist},SQ8` with nlist the power of two nearest 4·√n (at least 16). SQ8 (one byte per
/// dimension) ranks candidates closely enough that the detector's exact re-scoring of 4·k of
/// them finds the true neighbours: at 1M vectors 72× flat's speed at recall@10 0.99, where PQ32
/// needed a pool 16 times larger and reached 0.78 (benches/README.md, "Search index").
pub fn auto_description(n: usize) -> String {
    let target = (4.0 * (n as f64).sqrt()).max(16.0);
    let nlist = 2f64.powf(target.log2().round()) as usize;
    format!("IVF{nlist},SQ8")
}

/// Why a `detector.index` value is refused, or why a background training failed. The messages
/// name no key: config validation puts them after `detector.index = …`, the training log after
/// the index's factory string.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IndexError {
    /// `detector.index` is empty or blank.
    #[error("must be \"auto\" or a FAISS factory string such as Flat or IVF1024,SQ8")]
    Blank,
    /// FAISS's `index_factory` refuses the configured factory string.
    #[error("FAISS cannot build it: {source}")]
    Unbuildable { source: faiss::error::Error },
    /// The training thread could not build the index it was to train.
    #[error("cannot build it: {source}")]
    Build { source: faiss::error::Error },
    /// FAISS failed to train the index on the sample of `vectors` vectors.
    #[error("training on {vectors} vectors: {source}")]
    Train {
        vectors: usize,
        source: faiss::error::Error,
    },
    /// FAISS failed to fill the trained index with the baseline's vectors.
    #[error("adding vectors: {source}")]
    Fill { source: faiss::error::Error },
    /// The training thread ended without sending its result (it panicked).
    #[error("the training thread died")]
    ThreadDied,
}

/// Checks a `detector.index` value: `auto`, or a factory string FAISS builds for 384-d vectors.
/// Returns whether the index needs training.
pub fn check_factory(index: &str) -> Result<bool, IndexError> {
    if index == AUTO {
        return Ok(true);
    }
    if index.trim().is_empty() {
        return Err(IndexError::Blank);
    }
    let built = index_factory(EMBEDDING_DIM, full_description(index), MetricType::L2)
        .map_err(|source| IndexError::Unbuildable { source })?;
    Ok(!built.is_trained())
}

fn faiss_error(description: &str) -> impl Fn(faiss::error::Error) -> DetectError + '_ {
    move |source| DetectError::Faiss {
        description: description.to_owned(),
        source,
    }
}

/// How far the texts added since the last training lie from the trained IVF lists.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Drift {
    /// Squared distance to the nearest list centre within which 90% of the training texts lie.
    pub reference: f32,
    /// Texts added since training, and how many of them lie beyond `reference`.
    pub added: u64,
    pub beyond: u64,
}

impl Drift {
    /// Share of the added texts beyond the reference (about 0.1 without drift).
    pub fn share(&self) -> f64 {
        if self.added == 0 {
            0.0
        } else {
            self.beyond as f64 / self.added as f64
        }
    }
}

/// A background training's product: the filled index and, for an IVF index, its drift reference.
struct Trained {
    index: IndexImpl,
    drift_reference: Option<f32>,
}

struct Training {
    description: String,
    covers: usize,
    reason: &'static str,
    started: Instant,
    result: Receiver<Result<Trained, IndexError>>,
}

pub struct SearchIndex {
    /// `detector.index` as configured (`auto` or a factory string).
    plan: String,
    needs_training: bool,
    index: IndexImpl,
    description: String,
    /// Distinct vectors the current trained index was trained on; 0 while exact.
    trained_on: usize,
    nprobe: usize,
    train_min: usize,
    retrain_growth: f64,
    retrain_drift: f64,
    /// `None` while exact, and for trained indexes without IVF lists.
    drift: Option<Drift>,
    training: Option<Training>,
    retrain_requested: bool,
    /// Trained indexes swapped in since start.
    pub swaps: u64,
    /// Where a trained index is searched, decided at start.
    place: SearchPlace,
    gpu_temp_memory_bytes: usize,
    /// The GPU copy of the trained index, while it works.
    #[cfg(feature = "faiss-gpu")]
    mirror: Option<super::gpu::GpuMirror>,
}

impl SearchIndex {
    /// An index for the configured plan: the exact index when the plan needs training, else
    /// the configured index itself.
    pub fn new(config: &DetectorConfig) -> Result<SearchIndex, DetectError> {
        let needs_training =
            check_factory(&config.index).map_err(|reason| DetectError::Config {
                key: "detector.index",
                reason: reason.to_string(),
            })?;
        let description = if needs_training {
            EXACT.to_owned()
        } else {
            full_description(&config.index)
        };
        let index = index_factory(EMBEDDING_DIM, &description, MetricType::L2)
            .map_err(faiss_error(&description))?;
        let gpu = config.gpu_search;
        let fits = super::gpu::gpu_plan(
            &config.index,
            config.k * super::CANDIDATE_FACTOR,
            config.nprobe,
        );
        let place = super::gpu::choose(gpu.placement, gpu.device, &fits).map_err(|reason| {
            DetectError::Config {
                key: "gpu.index",
                reason: format!("\"gpu\" cannot be honoured: {reason}"),
            }
        })?;
        match &place {
            SearchPlace::Gpu(device) => {
                info!(device, "the trained index will be searched on the GPU")
            }
            SearchPlace::Cpu(why) => info!(%why, "index search on the CPU"),
        }
        let mut search = SearchIndex {
            plan: config.index.clone(),
            needs_training,
            index,
            description,
            trained_on: 0,
            nprobe: config.nprobe,
            train_min: config.train_min_vectors,
            retrain_growth: config.retrain_growth,
            retrain_drift: config.retrain_drift,
            drift: None,
            training: None,
            retrain_requested: false,
            swaps: 0,
            place,
            gpu_temp_memory_bytes: gpu.temp_memory_bytes,
            #[cfg(feature = "faiss-gpu")]
            mirror: None,
        };
        // An index that needs no training (`Flat`) is mirrored from the start.
        search.mirror_to_gpu();
        Ok(search)
    }

    /// Where search runs now: `gpu N` while a mirror serves, else `cpu (why)`.
    pub fn search_place(&self) -> String {
        #[cfg(feature = "faiss-gpu")]
        if let Some(m) = &self.mirror {
            return SearchPlace::Gpu(m.device).to_string();
        }
        match &self.place {
            SearchPlace::Gpu(_) if self.exact_until_trained() => "cpu (exact until trained)".into(),
            SearchPlace::Gpu(device) => {
                format!("cpu (the GPU {device} mirror failed; see the log)")
            }
            cpu => cpu.to_string(),
        }
    }

    /// The young baseline's exact index, searched on the CPU until a trained one replaces it.
    fn exact_until_trained(&self) -> bool {
        self.needs_training && self.trained_on == 0
    }

    /// Mirrors the index (nprobe already set) to the GPU when search belongs there.
    fn mirror_to_gpu(&mut self) {
        let SearchPlace::Gpu(device) = self.place else {
            return;
        };
        if self.exact_until_trained() {
            return;
        }
        // The index in hand may differ from the configured one (a snapshot's): check it.
        let layout = self.description.trim_start_matches("IDMap2,");
        let plan = match super::gpu::gpu_plan(layout, 0, self.nprobe) {
            Ok(plan) => plan,
            Err(limit) => {
                warn!(index = %self.description, why = %limit.why, "this index cannot go to the GPU; searching on the CPU");
                return;
            }
        };
        #[cfg(feature = "faiss-gpu")]
        {
            self.mirror = None;
            let started = Instant::now();
            match super::gpu::GpuMirror::of(&self.index, device, self.gpu_temp_memory_bytes, plan) {
                Ok(mirror) => {
                    info!(device, index = %self.description, vectors = self.index.ntotal(), ms = started.elapsed().as_millis() as u64, "trained index mirrored to the GPU; searching there");
                    self.mirror = Some(mirror);
                }
                Err(e) => {
                    error!(device, index = %self.description, error = %e, "cannot mirror the index to the GPU; searching on the CPU")
                }
            }
        }
        #[cfg(not(feature = "faiss-gpu"))]
        let _ = (device, plan, self.gpu_temp_memory_bytes);
    }

    /// Drops a GPU mirror that failed; search goes on with the CPU copy.
    #[cfg(feature = "faiss-gpu")]
    fn retire_mirror(&mut self, what: &str, e: &faiss::error::Error) {
        if let Some(m) = self.mirror.take() {
            error!(device = m.device, error = %e, "GPU index {what} failed; searching on the CPU copy from now on");
        }
    }

    /// Resumes from a trained index loaded from a snapshot, with the drift it had measured.
    pub fn adopt(
        &mut self,
        index: IndexImpl,
        description: String,
        trained_on: usize,
        drift: Option<Drift>,
    ) -> Result<(), DetectError> {
        if drift.is_none() && coarse_distances(&index, &[]).is_some() {
            warn!(index = %description, "the snapshot has no drift reference; drift is measured again after the next training");
        }
        self.index = index;
        self.description = description;
        self.trained_on = trained_on;
        self.drift = drift;
        self.apply_nprobe()?;
        self.mirror_to_gpu();
        Ok(())
    }

    /// Drift since the last training, for an IVF index.
    pub fn drift(&self) -> Option<Drift> {
        self.drift
    }

    pub fn description(&self) -> &str {
        &self.description
    }

    #[cfg(test)]
    pub fn len(&self) -> u64 {
        self.index.ntotal()
    }

    pub fn trained_on(&self) -> usize {
        self.trained_on
    }

    pub fn is_training(&self) -> bool {
        self.training.is_some()
    }

    pub fn index(&self) -> &IndexImpl {
        &self.index
    }

    /// Asks for a retrain at the next [`SearchIndex::maintain`], whatever the growth.
    pub fn request_retrain(&mut self) {
        self.retrain_requested = true;
    }

    fn apply_nprobe(&mut self) -> Result<(), DetectError> {
        if self.trained_on == 0 || !self.description.contains("IVF") {
            return Ok(());
        }
        let space = ParameterSpace::new().map_err(faiss_error(&self.description))?;
        space
            .set_index_parameter(&self.index, "nprobe", self.nprobe as f64)
            .map_err(faiss_error(&self.description))
    }

    pub fn add(&mut self, id: u64, vector: &[f32]) -> Result<(), DetectError> {
        self.add_rows(id, vector)
    }

    /// Adds consecutive rows of `vectors` with ids `first_id`, `first_id + 1`, … in one call.
    pub fn add_rows(&mut self, first_id: u64, vectors: &[f32]) -> Result<(), DetectError> {
        faiss_on_this_thread_only();
        let ids: Vec<Idx> = (first_id..first_id + (vectors.len() / DIM) as u64)
            .map(Idx::new)
            .collect();
        self.index
            .add_with_ids(vectors, &ids)
            .map_err(faiss_error(&self.description))?;
        #[cfg(feature = "faiss-gpu")]
        if let Some(m) = &mut self.mirror {
            if let Err(e) = m.index().add_with_ids(vectors, &ids) {
                self.retire_mirror("add", &e);
            }
        }
        self.note_drift(vectors);
        Ok(())
    }

    /// Counts which of the added `vectors` lie beyond the training texts' residual reference.
    fn note_drift(&mut self, vectors: &[f32]) {
        let Some(drift) = &mut self.drift else {
            return;
        };
        if let Some(residuals) = coarse_distances(&self.index, vectors) {
            drift.added += residuals.len() as u64;
            drift.beyond += residuals.iter().filter(|&&r| r > drift.reference).count() as u64;
        }
    }

    fn drifted(&self) -> bool {
        let Some(drift) = self.drift else {
            return false;
        };
        let enough = DRIFT_MIN_ADDED.max(self.trained_on as u64 / 10);
        self.retrain_drift > 0.0 && drift.added >= enough && drift.share() >= self.retrain_drift
    }

    /// The ids of up to `k` candidates per query row, nearest first.
    pub fn search(&mut self, queries: &[f32], k: usize) -> Result<Vec<Vec<u64>>, DetectError> {
        let rows = queries.len() / DIM;
        if rows == 0 || self.index.ntotal() == 0 {
            return Ok(vec![Vec::new(); rows]);
        }
        let k = k.min(self.index.ntotal() as usize).max(1);
        faiss_on_this_thread_only();
        #[cfg(feature = "faiss-gpu")]
        let on_gpu = match &mut self.mirror {
            Some(m) => match m.index().search(queries, k) {
                Ok(found) => Some(found),
                Err(e) => {
                    self.retire_mirror("search", &e);
                    None
                }
            },
            None => None,
        };
        #[cfg(not(feature = "faiss-gpu"))]
        let on_gpu = None;
        let found = match on_gpu {
            Some(found) => found,
            None => self
                .index
                .search(queries, k)
                .map_err(faiss_error(&self.description))?,
        };
        Ok((0..rows)
            .map(|row| {
                found.labels[row * k..(row + 1) * k]
                    .iter()
                    .filter_map(|l| l.get())
                    .collect()
            })
            .collect())
    }

    /// Why the index should be trained now, if it should.
    fn training_reason(&self, distinct: usize) -> Option<&'static str> {
        if !self.needs_training || self.training.is_some() || distinct < self.train_min {
            None
        } else if self.trained_on == 0 {
            Some("first training")
        } else if self.retrain_requested {
            Some("requested")
        } else if distinct as f64 >= self.trained_on as f64 * self.retrain_growth {
            Some("growth")
        } else if self.drifted() {
            Some("drift")
        } else {
            None
        }
    }

    /// Between batches: swaps in a finished background training (adding the vectors that joined
    /// while it ran), or starts one when the baseline is large enough.
    pub fn maintain(&mut self, baseline: &Baseline) {
        faiss_on_this_thread_only();
        let distinct = baseline.len();
        if let Some(training) = &self.training {
            match training.result.try_recv() {
                Err(TryRecvError::Empty) => return,
                Err(TryRecvError::Disconnected) => {
                    error!(index = %training.description, "index training thread died; staying on the current index");
                    self.training = None;
                    return;
                }
                Ok(Err(reason)) => {
                    error!(index = %training.description, %reason, "index training failed; staying on the current index");
                    // Try again only after more growth or fresh evidence of drift, not in a loop.
                    self.trained_on = self.trained_on.max(training.covers);
                    if let Some(drift) = &mut self.drift {
                        drift.added = 0;
                        drift.beyond = 0;
                    }
                    self.training = None;
                    return;
                }
                Ok(Ok(trained)) => {
                    let training = self.training.take().expect("checked above");
                    let joined: Vec<f32> = (training.covers..distinct)
                        .flat_map(|id| baseline.vector(id as u64).iter().copied())
                        .collect();
                    let mut index = trained.index;
                    let ids: Vec<Idx> = (training.covers as u64..distinct as u64)
                        .map(Idx::new)
                        .collect();
                    if let Err(e) = index.add_with_ids(&joined, &ids) {
                        error!(index = %training.description, error = %e, "could not fill the trained index; staying on the current index");
                        return;
                    }
                    let previous = std::mem::replace(&mut self.description, training.description);
                    self.index = index;
                    self.trained_on = training.covers;
                    self.drift = trained.drift_reference.map(|reference| Drift {
                        reference,
                        ..Drift::default()
                    });
                    self.note_drift(&joined);
                    self.swaps += 1;
                    if let Err(e) = self.apply_nprobe() {
                        error!(error = %e, "could not set nprobe on the new index");
                    }
                    self.mirror_to_gpu();
                    info!(
                        from = %previous,
                        to = %self.description,
                        reason = training.reason,
                        trained_on = training.covers,
                        vectors = self.index.ntotal(),
                        nprobe = self.nprobe,
                        seconds = training.started.elapsed().as_secs_f64(),
                        "trained index swapped in"
                    );
                    return;
                }
            }
        }
        if let Some(reason) = self.training_reason(distinct) {
            self.retrain_requested = false;
            let rows = baseline.shared_rows();
            let description = full_description(&if self.plan == AUTO {
                auto_description(rows.rows())
            } else {
                self.plan.clone()
            });
            info!(index = %description, vectors = rows.rows(), reason, drift = ?self.drift, "training the index in the background");
            let (tx, rx) = std::sync::mpsc::channel();
            let covers = rows.rows();
            let thread_description = description.clone();
            let spawned = std::thread::Builder::new()
                .name("anomalyd-train".into())
                .spawn(move || {
                    let _ = tx.send(train(&thread_description, &rows));
                });
            match spawned {
                Ok(_) => {
                    self.training = Some(Training {
                        description,
                        covers,
                        reason,
                        started: Instant::now(),
                        result: rx,
                    })
                }
                Err(e) => error!(error = %e, "cannot start the training thread"),
            }
        }
    }

    /// Waits for a running training and swaps it in (tests, and an orderly shutdown that wants
    /// the trained index in its snapshot).
    pub fn finish_training(&mut self, baseline: &Baseline) {
        let Some(training) = self.training.take() else {
            return;
        };
        let result = training
            .result
            .recv()
            .unwrap_or_else(|_| Err(IndexError::ThreadDied));
        let (tx, rx) = std::sync::mpsc::channel();
        let _ = tx.send(result);
        self.training = Some(Training {
            result: rx,
            ..training
        });
        self.maintain(baseline);
    }
}

/// Builds, trains and fills an index over `rows` (ids = row numbers), and measures its drift
/// reference on a sample of them.
fn train(description: &str, rows: &SharedRows) -> Result<Trained, IndexError> {
    faiss_on_this_thread_only();
    let mut index = index_factory(EMBEDDING_DIM, description, MetricType::L2)
        .map_err(|source| IndexError::Build { source })?;
    let nlist = description
        .split(',')
        .find_map(|part| part.strip_prefix("IVF"))
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(1);
    let wanted = (nlist * TRAIN_POINTS_PER_LIST).max(TRAIN_MIN_POINTS);
    let step = (rows.rows() / wanted).max(1);
    let sample = rows.sample(step);
    index.train(&sample).map_err(|source| IndexError::Train {
        vectors: sample.len() / DIM,
        source,
    })?;
    let mut id = 0u64;
    for slice in rows.slices() {
        let n = slice.len() / DIM;
        let ids: Vec<Idx> = (id..id + n as u64).map(Idx::new).collect();
        index
            .add_with_ids(slice, &ids)
            .map_err(|source| IndexError::Fill { source })?;
        id += n as u64;
    }
    let probe = rows.sample(rows.rows() / DRIFT_REFERENCE_POINTS);
    let drift_reference = coarse_distances(&index, &probe).and_then(|mut residuals| {
        residuals.sort_by(f32::total_cmp);
        let at = ((residuals.len() as f64 - 1.0) * DRIFT_REFERENCE_QUANTILE).round() as usize;
        residuals.get(at).copied()
    });
    Ok(Trained {
        index,
        drift_reference,
    })
}

/// The squared distance of each row to its nearest IVF list centre, or `None` when `index` has
/// no IVF coarse quantiser (flat, HNSW, plain PQ…) or FAISS fails.
fn coarse_distances(index: &IndexImpl, rows: &[f32]) -> Option<Vec<f32>> {
    let n = rows.len() / DIM;
    let mut distances = vec![0f32; n];
    let mut lists = vec![0 as faiss_sys::idx_t; n];
    // SAFETY: the casts are C++ dynamic_casts that return null for another index type; the
    // pointers they return are borrowed from `index`, which outlives this call, and none is freed
    // or kept. The search reads `n` rows of DIM floats from `rows` and writes `n` results into
    // buffers of `n` elements (k = 1); FAISS runs it on this thread.
    let status = unsafe {
        let mut inner = index.inner_ptr();
        let id_map = faiss_sys::faiss_IndexIDMap_cast(inner);
        if !id_map.is_null() {
            inner = faiss_sys::faiss_IndexIDMap_sub_index(id_map);
        }
        let ivf = faiss_sys::faiss_IndexIVF_cast(inner);
        if ivf.is_null() {
            return None;
        }
        let quantizer = faiss_sys::faiss_IndexIVF_quantizer(ivf);
        if quantizer.is_null() {
            return None;
        }
        if n == 0 {
            return Some(distances);
        }
        faiss_sys::faiss_Index_search(
            quantizer,
            n as faiss_sys::idx_t,
            rows.as_ptr(),
            1,
            distances.as_mut_ptr(),
            lists.as_mut_ptr(),
        )
    };
    (status == 0).then_some(distances)
}
