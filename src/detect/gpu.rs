//! FAISS search on a GPU. The trained index stays on the CPU as the master copy (snapshots, drift
//! measurement and additions go there); with feature `faiss-gpu` and a GPU, a mirror of it is
//! cloned to the GPU (`index_cpu_to_gpu` with StandardGpuResources and a bounded scratch memory),
//! every addition goes to both, and searches go to the mirror. A mirror that fails is dropped and
//! search goes on on the CPU copy, so no batch is lost to a GPU fault.
//!
//! What FAISS 1.12 can put on a GPU is checked here from the factory string, so an impossible
//! configuration is a config error naming its key rather than a failed clone at run time.

use crate::config::{IndexPlacement, EMBEDDING_DIM};

/// FAISS's GPU k-selection and nprobe limit (`GPU_MAX_SELECTION_K` with CUDA ≥ 9).
pub const GPU_MAX_SELECTION: usize = 2048;

/// Bytes per PQ code (sub-quantisers at 8 bits) that FAISS's GPU IVFPQ implements.
const PQ_BYTES_ON_GPU: [usize; 16] = [1, 2, 3, 4, 8, 12, 16, 20, 24, 28, 32, 40, 48, 56, 64, 96];

/// Above this many sub-quantisers the fp32 distance tables (M × 256 × 4 bytes) overflow 48 KiB of
/// shared memory per block; fp16 tables halve them.
const PQ_FP32_TABLES_MAX: usize = 48;

/// Scalar quantisers with a GPU implementation, as factory names.
const SQ_ON_GPU: [&str; 5] = ["SQ4", "SQ6", "SQ8", "SQfp16", "SQ8_direct"];

/// How a mirror must be cloned for an index the GPU can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GpuPlan {
    /// PQ distance tables in fp16 (needed above 48 sub-quantisers).
    pub fp16_lookup_tables: bool,
}

/// Why an index cannot be searched on the GPU, naming the config key at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuLimit {
    pub key: &'static str,
    pub why: String,
}

fn limit(key: &'static str, why: String) -> GpuLimit {
    GpuLimit { key, why }
}

/// Checks a `detector.index` value ("auto" or a factory string, `IDMap2,` or not) and the search's
/// candidate count and nprobe against what FAISS can clone to a GPU. An allowlist: what is not
/// known to have a GPU implementation is refused, so a layout that would only fail at the clone
/// (after a training, logged) is a config error instead.
pub fn gpu_plan(index: &str, candidates: usize, nprobe: usize) -> Result<GpuPlan, GpuLimit> {
    if candidates > GPU_MAX_SELECTION {
        return Err(limit(
            "detector.k",
            format!(
                "the detector asks for {candidates} candidates per query (4 per neighbour), and \
                 FAISS on a GPU selects at most {GPU_MAX_SELECTION}: use k ≤ {}, or gpu.index = \"cpu\"",
                GPU_MAX_SELECTION / 4
            ),
        ));
    }
    if nprobe > GPU_MAX_SELECTION {
        return Err(limit(
            "detector.nprobe",
            format!("FAISS on a GPU probes at most {GPU_MAX_SELECTION} lists"),
        ));
    }
    let mut plan = GpuPlan::default();
    if index == super::AUTO {
        return Ok(plan); // IVF{nlist},SQ8
    }
    let refuse = |why: String| Err(limit("detector.index", why));
    // Dimensions the quantiser sees: a pre-transform may reduce them.
    let mut dim = EMBEDDING_DIM as usize;
    let mut ivf = false;
    let mut encoded = false;
    for c in index.split(',').map(str::trim) {
        if c.starts_with("IDMap") || c == "L2norm" {
            continue;
        }
        if let Some(spec) = c.strip_prefix("OPQ").or_else(|| c.strip_prefix("PCA")) {
            if ivf || encoded {
                return refuse(format!("{c} must come before the index"));
            }
            // OPQ16_64, PCA64, PCAR64, PCAW64: the number after `_` (OPQ) or the digits (PCA).
            let out = match spec.split_once('_') {
                Some((_, d)) => d,
                None if c.starts_with("PCA") => spec.trim_start_matches(['R', 'W']),
                None => "",
            };
            if let Ok(d) = out.parse::<usize>() {
                dim = d;
            }
            continue;
        }
        if let Some(lists) = c.strip_prefix("IVF") {
            if lists.parse::<usize>().is_err() {
                return refuse(format!(
                    "{c}: only a plain IVF{{nlist}} coarse quantiser goes to the GPU (no HNSW or \
                     other quantiser inside it)"
                ));
            }
            ivf = true;
            continue;
        }
        if c == "Flat" {
            encoded = true;
            continue;
        }
        if let Some(pq) = c.strip_prefix("PQ") {
            let spec = pq.strip_suffix("np").unwrap_or(pq);
            let (m, nbits) = spec.split_once('x').unwrap_or((spec, "8"));
            let (Ok(m), Ok(nbits)) = (m.parse::<usize>(), nbits.parse::<usize>()) else {
                return refuse(format!(
                    "{c} has no GPU implementation (fast-scan and other PQ variants stay on the CPU)"
                ));
            };
            if !ivf {
                return refuse(format!(
                    "{c} without IVF lists has no GPU implementation; use IVF…,{c}"
                ));
            }
            if nbits != 8 {
                return refuse(format!(
                    "{c}: FAISS's GPU product quantiser takes only 8-bit codes, not {nbits}"
                ));
            }
            if !PQ_BYTES_ON_GPU.contains(&m) {
                return refuse(format!(
                    "{c}: FAISS's GPU product quantiser takes {PQ_BYTES_ON_GPU:?} bytes per code, not {m}"
                ));
            }
            if !dim.is_multiple_of(m) {
                return refuse(format!(
                    "{c}: {m} sub-quantisers must divide the {dim} dimensions"
                ));
            }
            plan.fp16_lookup_tables |= m > PQ_FP32_TABLES_MAX;
            encoded = true;
            continue;
        }
        if c.starts_with("SQ") {
            if !SQ_ON_GPU.contains(&c) {
                return refuse(format!(
                    "{c} has no GPU implementation; the GPU takes {SQ_ON_GPU:?}"
                ));
            }
            if !ivf {
                return refuse(format!(
                    "{c} without IVF lists has no GPU implementation; use IVF…,{c}"
                ));
            }
            encoded = true;
            continue;
        }
        if c == "RFlat" || c.starts_with("Refine") {
            return refuse(format!(
                "{c} (re-ranking) has no GPU implementation; leave it out: the detector \
                 re-ranks candidates exactly itself"
            ));
        }
        return refuse(format!(
            "{c} has no GPU implementation; the GPU takes Flat, IVF{{nlist}},Flat, \
             IVF{{nlist}},SQ8 (SQ4, SQ6, SQfp16) or IVF{{nlist}},PQ{{m}}"
        ));
    }
    Ok(plan)
}

/// Why search cannot go to a GPU, or a GPU mirror could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GpuError {
    /// The index, `detector.k` or `detector.nprobe` exceeds what FAISS does on a GPU.
    #[error("{}: {}", limit.key, limit.why)]
    Unfit { limit: GpuLimit },
    /// Built without cargo feature `faiss-gpu`.
    #[error("this build has no FAISS GPU support (cargo feature faiss-gpu)")]
    NoFaissGpu,
    /// `gpu.device` names a GPU FAISS does not see.
    #[error("GPU {device} does not exist ({visible} visible)")]
    NoSuchDevice { device: u32, visible: usize },
    /// The NVIDIA driver library cannot be loaded.
    #[error("libcuda (the NVIDIA driver) not found on the library path")]
    NoDriver,
    /// `faiss_get_num_gpus` returned error `code`.
    #[error("FAISS could not count GPUs (error {code})")]
    CountFailed { code: std::ffi::c_int },
    /// A FAISS C API call made for the mirror returned `code`, with FAISS's last error message.
    #[error("{call} failed ({code}): {message}")]
    FaissCall {
        call: &'static str,
        code: std::ffi::c_int,
        message: String,
    },
}

/// Where search runs, and why, for the log and `IndexDescription`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchPlace {
    Cpu(String),
    Gpu(u32),
}

impl std::fmt::Display for SearchPlace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SearchPlace::Cpu(why) => write!(f, "cpu ({why})"),
            SearchPlace::Gpu(device) => write!(f, "gpu {device}"),
        }
    }
}

/// Whether a trained index should be mirrored to a GPU, from the configuration and this build.
/// `Err` is for `gpu.index = "gpu"` when that cannot be honoured: start-up stops with the reason.
pub fn choose(
    placement: IndexPlacement,
    device: u32,
    fits: &Result<GpuPlan, GpuLimit>,
) -> Result<SearchPlace, GpuError> {
    let cpu = |why: GpuError| -> Result<SearchPlace, GpuError> {
        match placement {
            IndexPlacement::Gpu => Err(why),
            _ => Ok(SearchPlace::Cpu(why.to_string())),
        }
    };
    match placement {
        IndexPlacement::Cpu => return Ok(SearchPlace::Cpu("gpu.index = \"cpu\"".into())),
        IndexPlacement::Off => {
            return Ok(SearchPlace::Cpu("gpu.device = \"off\"".into()));
        }
        IndexPlacement::Auto | IndexPlacement::Gpu => {}
    }
    if let Err(limit) = fits {
        return cpu(GpuError::Unfit {
            limit: limit.clone(),
        });
    }
    if !cfg!(feature = "faiss-gpu") {
        return cpu(GpuError::NoFaissGpu);
    }
    match gpu_count() {
        Ok(n) if (device as usize) < n => Ok(SearchPlace::Gpu(device)),
        Ok(n) => cpu(GpuError::NoSuchDevice { device, visible: n }),
        Err(why) => cpu(why),
    }
}

/// GPUs FAISS sees. The driver is probed first: FAISS aborts the process on a CUDA error other
/// than "no device".
#[cfg(feature = "faiss-gpu")]
fn gpu_count() -> Result<usize, GpuError> {
    let (driver, _, _) = crate::embed::cuda::library_presence();
    if !driver {
        return Err(GpuError::NoDriver);
    }
    let mut n: std::ffi::c_int = 0;
    // SAFETY: writes one int through a valid pointer; the driver is known to load.
    let code = unsafe { faiss_sys::faiss_get_num_gpus(&mut n) };
    if code != 0 {
        return Err(GpuError::CountFailed { code });
    }
    Ok(n.max(0) as usize)
}

#[cfg(not(feature = "faiss-gpu"))]
fn gpu_count() -> Result<usize, GpuError> {
    Ok(0)
}

#[cfg(feature = "faiss-gpu")]
pub use mirror::GpuMirror;

#[cfg(feature = "faiss-gpu")]
mod mirror {
    use faiss::index::{FromInnerPtr, IndexImpl};

    use super::{GpuError, GpuPlan};

    /// The failure of FAISS call `call`, with this thread's last FAISS error message, after it
    /// returned `code`.
    fn last_error(call: &'static str, code: std::ffi::c_int) -> GpuError {
        // SAFETY: faiss_get_last_error returns this thread's last message or null.
        let msg = unsafe {
            let p = faiss_sys::faiss_get_last_error();
            if p.is_null() {
                String::new()
            } else {
                std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
            }
        };
        GpuError::FaissCall {
            call,
            code,
            message: msg.trim().to_owned(),
        }
    }

    /// FAISS's per-GPU resources (streams, cuBLAS handle, scratch memory).
    struct Resources(*mut faiss_sys::FaissStandardGpuResources);

    // SAFETY: the resources are created, used and freed by whichever one thread owns the
    // SearchIndex (the detect thread); they are never shared.
    unsafe impl Send for Resources {}

    impl Drop for Resources {
        fn drop(&mut self) {
            // SAFETY: created by faiss_StandardGpuResources_new and freed once, here. A GPU index
            // keeps its own shared reference to the implementation, so order does not matter.
            unsafe { faiss_sys::faiss_StandardGpuResources_free(self.0) }
        }
    }

    /// A GPU copy of a trained CPU index, searched in its place.
    pub struct GpuMirror {
        index: IndexImpl,
        _resources: Resources,
        pub device: u32,
    }

    impl GpuMirror {
        /// Clones `cpu` (nprobe already set on it: FAISS copies it over) to `device`, with at
        /// most `temp_memory_bytes` of scratch memory reserved.
        pub fn of(
            cpu: &IndexImpl,
            device: u32,
            temp_memory_bytes: usize,
            plan: GpuPlan,
        ) -> Result<GpuMirror, GpuError> {
            let mut res = std::ptr::null_mut();
            // SAFETY: out-pointer to a fresh object; checked for failure below.
            let code = unsafe { faiss_sys::faiss_StandardGpuResources_new(&mut res) };
            if code != 0 || res.is_null() {
                return Err(last_error("StandardGpuResources", code));
            }
            let resources = Resources(res);
            // SAFETY: `res` is a live StandardGpuResources.
            let code = unsafe {
                faiss_sys::faiss_StandardGpuResources_setTempMemory(res, temp_memory_bytes)
            };
            if code != 0 {
                return Err(last_error("setTempMemory", code));
            }
            let mut options = std::ptr::null_mut();
            // SAFETY: out-pointer to fresh cloner options, freed below on every path.
            let code = unsafe { faiss_sys::faiss_GpuClonerOptions_new(&mut options) };
            if code != 0 || options.is_null() {
                return Err(last_error("GpuClonerOptions", code));
            }
            let mut gpu_index = std::ptr::null_mut();
            // SAFETY: `options` and `res` are live; `cpu` outlives the call and is only read;
            // FAISS writes the new index's pointer into `gpu_index`.
            let code = unsafe {
                faiss_sys::faiss_GpuClonerOptions_set_useFloat16(
                    options,
                    i32::from(plan.fp16_lookup_tables),
                );
                let code = faiss_sys::faiss_index_cpu_to_gpu_with_options(
                    res,
                    device as std::ffi::c_int,
                    cpu.inner_ptr(),
                    options,
                    &mut gpu_index,
                );
                faiss_sys::faiss_GpuClonerOptions_free(options);
                code
            };
            if code != 0 || gpu_index.is_null() {
                return Err(last_error("index_cpu_to_gpu", code));
            }
            Ok(GpuMirror {
                // SAFETY: a FaissGpuIndex is a FaissIndex (the same C type); IndexImpl frees it
                // with faiss_Index_free, whose virtual destructor releases the GPU memory.
                index: unsafe { IndexImpl::from_inner_ptr(gpu_index) },
                _resources: resources,
                device,
            })
        }

        pub fn index(&mut self) -> &mut IndexImpl {
            &mut self.index
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_index_and_common_layouts_fit_a_gpu() {
        for index in [
            "auto",
            "IVF4096,SQ8",
            "IDMap2,IVF1024,PQ32",
            "IVF1024,PQ48np",
            "IVF4096,PQ32x8np",
            "IVF1024,Flat",
            "Flat",
            "OPQ32,IVF1024,PQ32",
            "OPQ20_80,IVF1024,PQ20",
            "PCA128,IVF1024,SQ8",
        ] {
            assert_eq!(gpu_plan(index, 20, 4), Ok(GpuPlan::default()), "{index}");
        }
        assert_eq!(
            gpu_plan("IVF1024,PQ64", 20, 4),
            Ok(GpuPlan {
                fp16_lookup_tables: true
            })
        );
    }

    #[test]
    fn what_the_gpu_cannot_do_names_its_key_and_reason() {
        let cases = [
            (
                "IVF1024,PQ32x4",
                20,
                4,
                "detector.index",
                "only 8-bit codes",
            ),
            (
                "IVF1024,PQ6",
                20,
                4,
                "detector.index",
                "bytes per code, not 6",
            ),
            ("IVF1024,PQ56", 20, 4, "detector.index", "must divide"),
            ("PQ32", 20, 4, "detector.index", "without IVF lists"),
            (
                "IVF1024,SQbf16",
                20,
                4,
                "detector.index",
                "no GPU implementation",
            ),
            (
                "IVF1024,SQ8,RFlat",
                20,
                4,
                "detector.index",
                "re-ranks candidates exactly",
            ),
            ("HNSW32", 20, 4, "detector.index", "no GPU implementation"),
            (
                "IVF1024_HNSW32,SQ8",
                20,
                4,
                "detector.index",
                "plain IVF{nlist}",
            ),
            ("IVF1024,PQ32x4fs", 20, 4, "detector.index", "fast-scan"),
            ("SQ8", 20, 4, "detector.index", "without IVF lists"),
            (
                "IVF1024,RQ4x8",
                20,
                4,
                "detector.index",
                "no GPU implementation",
            ),
            ("auto", 4096, 4, "detector.k", "use k ≤ 512"),
            ("auto", 20, 4096, "detector.nprobe", "at most 2048"),
        ];
        for (index, candidates, nprobe, key, why) in cases {
            let err = gpu_plan(index, candidates, nprobe).expect_err(index);
            assert_eq!(err.key, key, "{index}");
            assert!(err.why.contains(why), "{index}: {}", err.why);
        }
    }

    #[test]
    fn placement_says_why_search_stays_on_the_cpu() {
        let fits = Ok(GpuPlan::default());
        assert_eq!(
            choose(IndexPlacement::Cpu, 0, &fits),
            Ok(SearchPlace::Cpu("gpu.index = \"cpu\"".into()))
        );
        let too_big = Err(GpuLimit {
            key: "detector.k",
            why: "too many".into(),
        });
        assert_eq!(
            choose(IndexPlacement::Auto, 0, &too_big),
            Ok(SearchPlace::Cpu("detector.k: too many".into()))
        );
        let refused = choose(IndexPlacement::Gpu, 0, &too_big).unwrap_err();
        assert_eq!(
            refused,
            GpuError::Unfit {
                limit: too_big.clone().unwrap_err()
            }
        );
        assert_eq!(refused.to_string(), "detector.k: too many");
        assert_eq!(
            choose(IndexPlacement::Off, 0, &fits),
            Ok(SearchPlace::Cpu("gpu.device = \"off\"".into()))
        );
        if !cfg!(feature = "faiss-gpu") {
            let why = "this build has no FAISS GPU support (cargo feature faiss-gpu)";
            assert_eq!(
                choose(IndexPlacement::Auto, 0, &fits),
                Ok(SearchPlace::Cpu(why.into()))
            );
            assert_eq!(
                choose(IndexPlacement::Gpu, 0, &fits),
                Err(GpuError::NoFaissGpu)
            );
            assert_eq!(GpuError::NoFaissGpu.to_string(), why);
        }
    }
}
