//! The two OpenBLAS entry points the CPU backend uses. OpenBLAS is already linked for FAISS
//! (`libopenblas-dev`, Debian's pthread build); its GEMM is the fastest measured here (see
//! benches/README.md).

use std::os::raw::{c_char, c_int};

const ROW_MAJOR: c_int = 101;
const NO_TRANS: c_int = 111;
const TRANS: c_int = 112;

#[link(name = "openblas")]
extern "C" {
    fn cblas_sgemm(
        order: c_int,
        trans_a: c_int,
        trans_b: c_int,
        m: c_int,
        n: c_int,
        k: c_int,
        alpha: f32,
        a: *const f32,
        lda: c_int,
        b: *const f32,
        ldb: c_int,
        beta: f32,
        c: *mut f32,
        ldc: c_int,
    );
    fn openblas_set_num_threads(threads: c_int);
    fn openblas_get_corename() -> *const c_char;
}

/// The kernel family OpenBLAS chose for this CPU at load time, e.g. `Cooperlake`, `Haswell`.
pub fn core_name() -> String {
    // SAFETY: returns a pointer to a static NUL-terminated string inside OpenBLAS (or null).
    let name = unsafe { openblas_get_corename() };
    if name.is_null() {
        return String::new();
    }
    // SAFETY: non-null, NUL-terminated and static, as above.
    unsafe { std::ffi::CStr::from_ptr(name) }
        .to_string_lossy()
        .into_owned()
}

/// The kernel family to ask OpenBLAS for (`OPENBLAS_CORETYPE`) when its own detection fell back
/// to the generic `Prescott` (SSE3) kernels on a CPU that runs better ones; `None` when it did
/// not, or when `OPENBLAS_CORETYPE` is already set. Debian 12's OpenBLAS 0.3.21 does not know
/// every newer CPU: on one Xeon with AVX-512 it chose Prescott, and its GEMM ran at a fifth of
/// the Cooperlake kernels' speed on the same core. OpenBLAS reads the variable only when it is
/// loaded, so `anomalyd` executes itself again with it set (see `src/bin/anomalyd/main.rs`).
pub fn better_core() -> Option<&'static str> {
    if std::env::var_os("OPENBLAS_CORETYPE").is_some()
        || !core_name().eq_ignore_ascii_case("prescott")
    {
        return None;
    }
    #[cfg(target_arch = "x86_64")]
    {
        use std::is_x86_feature_detected as has;
        let avx512 = has!("avx512f")
            && has!("avx512bw")
            && has!("avx512vl")
            && has!("avx512dq")
            && has!("avx512cd");
        if avx512 && has!("avx512bf16") {
            Some("Cooperlake")
        } else if avx512 {
            Some("SkylakeX")
        } else if has!("avx2") && has!("fma") {
            Some("Haswell")
        } else {
            None
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        None
    }
}

/// Executes this program again, same pid, arguments and environment, with `OPENBLAS_CORETYPE`
/// set to [`better_core`]: for a program's first lines, before it opens anything or starts a
/// thread of its own (OpenBLAS's own pool, started when it was loaded, goes with the exec).
/// Returns only when there is nothing to do, or when the exec failed: then it says why on stderr
/// and the program goes on with the generic kernels, its signal state as before.
pub fn exec_with_better_core(program: &str) {
    use std::os::unix::process::CommandExt;
    let Some(core) = better_core() else {
        return;
    };
    // `Command::exec` unblocks every signal and resets SIGPIPE to its default before it calls
    // execvp, in this process; a failed exec must not leave them so (a client hanging up would
    // then kill the daemon). Kept here to be put back.
    // SAFETY: a zeroed sigset_t is a valid argument for pthread_sigmask to fill.
    let mut mask: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: reads the calling thread's mask into `mask`, a valid sigset_t.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, std::ptr::null(), &mut mask) };
    let mut args = std::env::args_os();
    // /proc/self/exe rather than the path: it still executes the binary a package upgrade has
    // just replaced.
    let error = std::process::Command::new("/proc/self/exe")
        .arg0(args.next().unwrap_or_default())
        .args(args)
        .env("OPENBLAS_CORETYPE", core)
        .exec();
    // SAFETY: restores the mask read above and Rust's own SIGPIPE disposition (ignored, so a
    // closed peer is an EPIPE error); neither call takes a pointer we do not own.
    unsafe {
        libc::pthread_sigmask(libc::SIG_SETMASK, &mask, std::ptr::null_mut());
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    eprintln!("{program}: OpenBLAS chose its generic kernels, and executing again with OPENBLAS_CORETYPE={core} failed: {error}");
}

/// Sets how many threads OpenBLAS uses for every later call, process-wide (FAISS's BLAS calls too).
pub fn set_threads(threads: usize) {
    // SAFETY: a plain setter on OpenBLAS's global thread count; it takes no pointers.
    unsafe { openblas_set_num_threads(threads.clamp(1, 1024) as c_int) }
}

/// `c[m×n] = a[m×k] · bᵀ + beta·c`, where `b` is stored `[n×k]` (a PyTorch linear weight).
/// Every matrix is row-major and dense.
pub fn gemm_nt(m: usize, n: usize, k: usize, a: &[f32], b: &[f32], beta: f32, c: &mut [f32]) {
    assert!(
        a.len() >= m * k && b.len() >= n * k && c.len() >= m * n,
        "gemm_nt: operand too short"
    );
    assert!(
        m.max(n).max(k) <= c_int::MAX as usize,
        "gemm_nt: dimension over C int"
    );
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: the asserts above guarantee every operand covers the m×k, n×k and m×n elements the
    // call reads or writes with these leading dimensions; `c` is exclusively borrowed and cannot
    // alias `a` or `b`. Several threads call this at once (one per embedding worker): OpenBLAS
    // supports concurrent calls from user threads, and with its own thread count at 1 each call
    // runs entirely on its caller's thread, sharing no buffers.
    unsafe {
        cblas_sgemm(
            ROW_MAJOR,
            NO_TRANS,
            TRANS,
            m as c_int,
            n as c_int,
            k as c_int,
            1.0,
            a.as_ptr(),
            k as c_int,
            b.as_ptr(),
            k as c_int,
            beta,
            c.as_mut_ptr(),
            n as c_int,
        )
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn gemm_nt_matches_the_definition() {
        let (m, n, k) = (3, 4, 5);
        let a: Vec<f32> = (0..m * k).map(|i| i as f32 * 0.5 - 3.0).collect();
        let b: Vec<f32> = (0..n * k).map(|i| (i % 7) as f32 - 2.0).collect();
        let mut c = vec![1.0; m * n];
        super::gemm_nt(m, n, k, &a, &b, 1.0, &mut c);
        for i in 0..m {
            for j in 0..n {
                let expected: f32 = 1.0 + (0..k).map(|p| a[i * k + p] * b[j * k + p]).sum::<f32>();
                assert!((c[i * n + j] - expected).abs() < 1e-4, "c[{i}][{j}]");
            }
        }
    }
}
