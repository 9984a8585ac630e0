//! The two OpenBLAS entry points the CPU backend uses. OpenBLAS is already linked for FAISS
//! (`libopenblas-dev`, Debian's pthread build); its GEMM is the fastest measured here (see
//! benches/README.md).

use std::os::raw::c_int;

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
