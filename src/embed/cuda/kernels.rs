//! The kernels of `kernels/*.cu`, compiled at run time with NVRTC for the device's compute
//! capability and cached on disk, so that building anomalyd needs no CUDA toolkit and a restart
//! needs no compiler run. A kernel that compiles with any warning is refused: the log is the
//! error.

use std::ffi::{CStr, CString};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::CudaError;

/// Helpers every kernel uses, prepended to each source (NVRTC here has no include path).
const COMMON: &str = include_str!("../../../kernels/common.cuh");

/// One `kernels/*.cu` file and the entry points the backend launches from it.
pub struct Kernel {
    pub file: &'static str,
    pub entry_points: &'static [&'static str],
    source: &'static str,
}

pub const KERNELS: [Kernel; 5] = [
    Kernel {
        file: "embed_layernorm.cu",
        entry_points: &["embed_layernorm"],
        source: include_str!("../../../kernels/embed_layernorm.cu"),
    },
    Kernel {
        file: "bias_gelu.cu",
        entry_points: &["bias_act"],
        source: include_str!("../../../kernels/bias_gelu.cu"),
    },
    Kernel {
        file: "residual_layernorm.cu",
        entry_points: &["residual_layernorm"],
        source: include_str!("../../../kernels/residual_layernorm.cu"),
    },
    Kernel {
        file: "attention.cu",
        entry_points: &["attention_short"],
        source: include_str!("../../../kernels/attention.cu"),
    },
    Kernel {
        file: "mean_pool.cu",
        entry_points: &["mean_pool_normalize"],
        source: include_str!("../../../kernels/mean_pool.cu"),
    },
];

/// The architectures a release is checked to compile for (A100, H100/H200).
pub const CHECKED_ARCHITECTURES: [&str; 2] = ["sm_80", "sm_90"];

impl Kernel {
    /// The text NVRTC compiles: the common helpers, then this file, with `#line` markers so a
    /// diagnostic names the file and line it came from.
    pub fn full_source(&self) -> String {
        full_source(self.file, self.source)
    }

    pub fn compile(&self, arch: &str) -> Result<Vec<u8>, CudaError> {
        compile_cubin(self.file, &self.full_source(), arch)
    }
}

pub fn full_source(file: &str, source: &str) -> String {
    format!("#line 1 \"common.cuh\"\n{COMMON}\n#line 1 \"{file}\"\n{source}")
}

fn require_nvrtc() -> Result<(), CudaError> {
    // SAFETY: only dlopen()s the library and looks up its symbols; no NVRTC call is made.
    // (Not `library_presence`: compiling needs NVRTC alone, not the driver or cuBLAS.)
    if unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        Ok(())
    } else {
        Err(CudaError::LibraryMissing(
            "libnvrtc (NVRTC, from the CUDA toolkit or the nvidia-cuda-nvrtc wheel) is not on \
             the library path"
                .into(),
        ))
    }
}

/// NVRTC's version, (major, minor).
pub fn nvrtc_version() -> Result<(i32, i32), CudaError> {
    require_nvrtc()?;
    let (mut major, mut minor) = (0, 0);
    // SAFETY: the library is present (checked above); nvrtcVersion writes two ints through the
    // pointers it is given, which point at live locals.
    unsafe { cudarc::nvrtc::sys::nvrtcVersion(&mut major, &mut minor) }
        .result()
        .map_err(|e| CudaError::Nvrtc(format!("nvrtcVersion: {e}")))?;
    Ok((major, minor))
}

/// Compiles `source` (named `file` in diagnostics) to a CUBIN for `arch` ("sm_90"). Any line in
/// NVRTC's log, warning or error, fails the compilation.
pub fn compile_cubin(file: &str, source: &str, arch: &str) -> Result<Vec<u8>, CudaError> {
    require_nvrtc()?;
    if !arch
        .strip_prefix("sm_")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric()))
    {
        return Err(CudaError::Unsupported(format!(
            "{arch:?} is not a GPU architecture name such as sm_90"
        )));
    }
    let source_c = CString::new(source).map_err(|_| CudaError::Compile {
        file: file.to_owned(),
        arch: arch.to_owned(),
        log: "the source contains a NUL byte".into(),
    })?;
    let name_c = CString::new(file).unwrap_or_default();
    let program = cudarc::nvrtc::result::create_program(&source_c, Some(&name_c))
        .map_err(|e| CudaError::Nvrtc(format!("nvrtcCreateProgram: {e}")))?;
    let options = [
        format!("--gpu-architecture={arch}"),
        "--std=c++17".to_owned(),
    ];
    // SAFETY: `program` was just created and is destroyed once, at the end of this block; the
    // source and name it refers to outlive it.
    let outcome = unsafe {
        let compiled = cudarc::nvrtc::result::compile_program(program, &options);
        let log = cudarc::nvrtc::result::get_program_log(program)
            .map(|raw| {
                CStr::from_ptr(raw.as_ptr())
                    .to_string_lossy()
                    .trim()
                    .to_owned()
            })
            .unwrap_or_default();
        let cubin = match compiled {
            Ok(()) if log.is_empty() => cubin_of(program).map(Some),
            Ok(()) => Ok(None),
            Err(e) => Err(CudaError::Compile {
                file: file.to_owned(),
                arch: arch.to_owned(),
                log: if log.is_empty() {
                    e.to_string()
                } else {
                    log.clone()
                },
            }),
        };
        let _ = cudarc::nvrtc::result::destroy_program(program);
        cubin.map(|c| (c, log))
    };
    match outcome? {
        (Some(cubin), _) => Ok(cubin),
        (None, log) => Err(CudaError::Warnings {
            file: file.to_owned(),
            arch: arch.to_owned(),
            log,
        }),
    }
}

/// # Safety
/// `program` must be a live, successfully compiled NVRTC program.
unsafe fn cubin_of(program: cudarc::nvrtc::sys::nvrtcProgram) -> Result<Vec<u8>, CudaError> {
    let mut size = 0usize;
    // SAFETY: `program` is live and compiled (the caller's contract); `size` is a valid out
    // pointer for the call.
    unsafe { cudarc::nvrtc::sys::nvrtcGetCUBINSize(program, &mut size) }
        .result()
        .map_err(|e| CudaError::Nvrtc(format!("nvrtcGetCUBINSize: {e}")))?;
    let mut cubin = vec![0u8; size];
    // SAFETY: as above; `cubin` holds the `size` bytes NVRTC said it writes.
    unsafe { cudarc::nvrtc::sys::nvrtcGetCUBIN(program, cubin.as_mut_ptr().cast()) }
        .result()
        .map_err(|e| CudaError::Nvrtc(format!("nvrtcGetCUBIN: {e}")))?;
    if size == 0 || !cubin.starts_with(b"\x7fELF") {
        return Err(CudaError::Nvrtc(
            "NVRTC returned no CUBIN (was a virtual architecture such as compute_90 named?)".into(),
        ));
    }
    Ok(cubin)
}

/// CUBINs on disk, keyed by the source, the architecture and NVRTC's version; `None` compiles
/// every time.
pub struct KernelCache {
    dir: Option<PathBuf>,
}

impl KernelCache {
    pub fn new(dir: Option<PathBuf>) -> KernelCache {
        KernelCache { dir }
    }

    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The CUBIN of `kernel` for `arch`: from the cache when a matching one is there, else
    /// compiled and stored. A cache that cannot be written costs a compile per start, not a
    /// failure.
    pub fn cubin(&self, kernel: &Kernel, arch: &str) -> Result<Vec<u8>, CudaError> {
        let Some(dir) = &self.dir else {
            return kernel.compile(arch);
        };
        let (major, minor) = nvrtc_version()?;
        let mut key = Sha256::new();
        key.update(kernel.full_source());
        key.update(format!("\0{arch}\0nvrtc {major}.{minor}"));
        let stem = kernel.file.trim_end_matches(".cu");
        let path = dir.join(format!(
            "{stem}-{arch}-{}.cubin",
            &hex::encode(key.finalize())[..16]
        ));
        if let Ok(cubin) = std::fs::read(&path) {
            if cubin.starts_with(b"\x7fELF") {
                return Ok(cubin);
            }
        }
        let cubin = kernel.compile(arch)?;
        let stored = std::fs::create_dir_all(dir).and_then(|()| {
            let partial = path.with_extension("cubin.partial");
            std::fs::write(&partial, &cubin)?;
            std::fs::rename(&partial, &path)
        });
        if let Err(e) = stored {
            tracing::warn!(path = %path.display(), error = %e, "could not cache a compiled kernel");
        }
        Ok(cubin)
    }
}
