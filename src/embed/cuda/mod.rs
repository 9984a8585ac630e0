//! MiniLM on NVIDIA GPUs through cudarc: the driver, NVRTC and cuBLAS are loaded at run time, so
//! the same binary runs on a machine without them (and says why it embeds on the CPU).
//!
//! - [`kernels`]: `kernels/*.cu` compiled with NVRTC for the device, cached on disk.
//! - [`backend`]: the [`crate::embed::bert::Backend`] over cuBLAS and those kernels.
//! - [`device`]: one OS thread per GPU owning its context and streams, fed through a channel,
//!   pinned to the GPU's NUMA node; [`device::GpuPool`] spreads batches over several.
//! - [`staging`]: page-locked host buffers for each stream's per-batch transfers.

pub mod backend;
pub mod device;
pub mod kernels;
pub mod staging;

pub use device::{GpuOptions, GpuPool};

#[derive(Debug, thiserror::Error)]
pub enum CudaError {
    #[error("{0}")]
    LibraryMissing(String),
    #[error("CUDA driver: {0}")]
    Driver(#[from] cudarc::driver::DriverError),
    #[error("cuBLAS: {0}")]
    Blas(#[from] cudarc::cublas::result::CublasError),
    #[error("NVRTC: {0}")]
    Nvrtc(String),
    #[error("kernel {file} does not compile for {arch}:\n{log}")]
    Compile {
        file: String,
        arch: String,
        log: String,
    },
    #[error("kernel {file} compiles for {arch} with warnings, which are refused:\n{log}")]
    Warnings {
        file: String,
        arch: String,
        log: String,
    },
    #[error("{0}")]
    Unsupported(String),
    #[error("GPU {ordinal}: its embedder thread has stopped")]
    ThreadStopped { ordinal: usize },
    #[error(
        "GPU {ordinal}: the warm-up batch disagrees with the CPU (cosine {cosine:.5} < {min}) on {text:?}"
    )]
    WarmUpMismatch {
        ordinal: usize,
        cosine: f32,
        min: f32,
        text: String,
    },
}

/// Whether the driver, NVRTC and cuBLAS libraries load, in that order. cudarc panics on first
/// use of a library it cannot load, so this comes first.
pub fn library_presence() -> (bool, bool, bool) {
    // SAFETY: each probe only dlopen()s the library and looks up its symbols; no CUDA call is
    // made, and a library that is absent is reported as false rather than used.
    unsafe {
        (
            cudarc::driver::sys::is_culib_present(),
            cudarc::nvrtc::sys::is_culib_present(),
            cudarc::cublas::sys::is_culib_present(),
        )
    }
}

/// As [`library_presence`]; `Err` names the missing ones.
pub fn libraries_present() -> Result<(), CudaError> {
    let (driver, nvrtc, cublas) = library_presence();
    let missing: Vec<&str> = [
        (!driver).then_some("libcuda (the NVIDIA driver)"),
        (!nvrtc).then_some("libnvrtc"),
        (!cublas).then_some("libcublas"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(CudaError::LibraryMissing(format!(
            "{} not found on the library path",
            missing.join(", ")
        )))
    }
}
