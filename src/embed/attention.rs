//! Multi-head self-attention of one text over its own rows of the fused `[q | k | v]` product:
//! a kernel in AVX-512 intrinsics where the CPU has it (and each head's width is a multiple of
//! 16, as MiniLM's 32 is), plain Rust written to vectorise elsewhere.
//!
//! Attention is under 1% of a pass's arithmetic (a text of 18 tokens: 3 MFLOP against the
//! products' 383), but the plain loops, one query and one key at a time, each dot product
//! summed across its lanes and each `exp` a libm call, took a fifth of a batch's time on the bf16
//! path. The kernel scores four queries against sixteen keys a step and sums four queries'
//! outputs sixteen columns a step, with the sums in registers.

/// Queries attended together by the kernel: their sums stay in registers while each key or value
/// row is loaded once for all of them.
const QUERY_BLOCK: usize = 4;
/// Keys scored, and output columns summed, per step of the kernel: one AVX-512 register.
const LANES: usize = 16;

/// Self-attention of one text: `rows` are its `len` rows of the `[q | k | v]` product
/// (`3·hidden` wide, each part `heads` heads side by side), `out` its `len × hidden` context,
/// overwritten.
pub fn attend_text(rows: &[f32], hidden: usize, heads: usize, out: &mut [f32]) {
    let width = 3 * hidden;
    assert!(
        heads > 0 && hidden.is_multiple_of(heads) && rows.len().is_multiple_of(width),
        "attention: rows are not [q | k | v] of {heads} heads"
    );
    assert_eq!(out.len(), rows.len() / 3, "attention: output size");
    #[cfg(target_arch = "x86_64")]
    if (hidden / heads).is_multiple_of(LANES) && std::is_x86_feature_detected!("avx512f") {
        // SAFETY: AVX-512F was detected at run time just above.
        return unsafe { avx512::attend(rows, hidden, heads, out) };
    }
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 was detected at run time just above.
        return unsafe { portable_avx2(rows, hidden, heads, out) };
    }
    portable(rows, hidden, heads, out)
}

/// [`portable`] compiled for AVX2: the same bits (Rust neither reorders nor fuses float
/// operations), eight lanes where the baseline build has four.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn portable_avx2(rows: &[f32], hidden: usize, heads: usize, out: &mut [f32]) {
    portable(rows, hidden, heads, out)
}

/// One query at a time: its scores against every key, then its output. Each head's keys and
/// values are gathered contiguous first: a text's rows of `qkv` (4.5 KiB each for MiniLM) do not
/// stay in the L1 cache, one head's (128 bytes a row) do.
#[inline(always)]
fn portable(rows: &[f32], hidden: usize, heads: usize, out: &mut [f32]) {
    let width = 3 * hidden;
    let head_dim = hidden / heads;
    let scale = 1.0 / (head_dim as f32).sqrt();
    let len = rows.len() / width;
    let mut scores = vec![0.0f32; len];
    let mut keys = vec![0.0f32; len * head_dim];
    let mut values = vec![0.0f32; len * head_dim];
    out.fill(0.0);
    for h in 0..heads {
        let q_at = h * head_dim;
        let k_at = hidden + h * head_dim;
        let v_at = 2 * hidden + h * head_dim;
        for (j, row) in rows.chunks_exact(width).enumerate() {
            keys[j * head_dim..][..head_dim].copy_from_slice(&row[k_at..k_at + head_dim]);
            values[j * head_dim..][..head_dim].copy_from_slice(&row[v_at..v_at + head_dim]);
        }
        for i in 0..len {
            let q = &rows[i * width + q_at..i * width + q_at + head_dim];
            for (s, k) in scores.iter_mut().zip(keys.chunks_exact(head_dim)) {
                *s = dot(q, k) * scale;
            }
            softmax(&mut scores);
            let o = &mut out[i * hidden + q_at..i * hidden + q_at + head_dim];
            for (p, v) in scores.iter().zip(values.chunks_exact(head_dim)) {
                o.iter_mut().zip(v).for_each(|(o, v)| *o += p * v);
            }
        }
    }
}

/// A dot product with eight independent sums, so the compiler can keep them in one vector register.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let (a8, a_rest) = a.split_at(a.len() / 8 * 8);
    let (b8, b_rest) = b.split_at(a8.len());
    for (x, y) in a8.chunks_exact(8).zip(b8.chunks_exact(8)) {
        for l in 0..8 {
            lanes[l] += x[l] * y[l];
        }
    }
    lanes.iter().sum::<f32>() + a_rest.iter().zip(b_rest).map(|(x, y)| x * y).sum::<f32>()
}

/// Softmax in place: `exp(x − max)`, then scaled by one reciprocal of their sum. The max and
/// the sum run in 16 independent lanes: a single running value is a chain of dependent
/// instructions, one element at a time.
#[inline(always)]
fn softmax(row: &mut [f32]) {
    let (whole, rest) = row.split_at(row.len() / LANES * LANES);
    let mut lanes = [f32::NEG_INFINITY; LANES];
    for chunk in whole.chunks_exact(LANES) {
        for (m, v) in lanes.iter_mut().zip(chunk) {
            // Not `f32::max`: its NaN rule keeps this from vectorising.
            *m = if *v > *m { *v } else { *m };
        }
    }
    let max = lanes
        .iter()
        .chain(rest)
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    row.iter_mut().for_each(|v| *v = exp_nonpositive(*v - max));
    let (whole, rest) = row.split_at(row.len() / LANES * LANES);
    let mut lanes = [0.0f32; LANES];
    for chunk in whole.chunks_exact(LANES) {
        lanes.iter_mut().zip(chunk).for_each(|(s, v)| *s += v);
    }
    let inv = 1.0 / (lanes.iter().sum::<f32>() + rest.iter().sum::<f32>());
    row.iter_mut().for_each(|v| *v *= inv);
}

/// `e^x` for `x ≤ 0` (a softmax's shifted scores), within 2 ulp of the correctly rounded value
/// down to `x = −87.3` (just above the smallest normal f32), and 0 below; NaN stays NaN. Cephes'
/// `expf` polynomial after the reduction `x = n·ln 2 + r`, branch-free so the softmax loop
/// vectorises: libm's `expf` is a call per element.
#[inline(always)]
fn exp_nonpositive(x: f32) -> f32 {
    let underflows = x < EXP_LOWEST;
    let x = x.clamp(EXP_LOWEST, 0.0);
    let n = (x * std::f32::consts::LOG2_E + EXP_ROUND) - EXP_ROUND;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let mut p = r * EXP_POLY[0] + EXP_POLY[1];
    for c in &EXP_POLY[2..] {
        p = p * r + c;
    }
    let y = p * r * r + r + 1.0;
    // 2ⁿ from its exponent bits: n ≥ −126 after the clamp, a normal float.
    let scaled = y * f32::from_bits(((n as i32 + 127) as u32) << 23);
    if underflows {
        0.0
    } else {
        scaled
    }
}

/// Below this, `e^x` is under the smallest normal f32 (or nearly): 0.
const EXP_LOWEST: f32 = -87.3;
/// Rounds to the nearest integer with two additions (exact for |n| < 2²²); `round` is a call or
/// a longer sequence in the baseline build.
const EXP_ROUND: f32 = 12_582_912.0; // 1.5 · 2²³
/// ln 2 in two parts, the first short enough that n times it is exact.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// Cephes' `expf` polynomial for `(e^r − 1 − r) / r²`, highest power first.
const EXP_POLY: [f32; 6] = [
    1.987_569_1e-4,
    1.398_199_9e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    1.666_666_5e-1,
    0.5,
];

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{LANES, QUERY_BLOCK};

    #[target_feature(enable = "avx512f")]
    fn load(values: &[f32; LANES]) -> __m512 {
        // SAFETY: `values` is 16 readable floats; the load takes any alignment.
        unsafe { _mm512_loadu_ps(values.as_ptr()) }
    }

    #[target_feature(enable = "avx512f")]
    fn store(to: &mut [f32; LANES], sums: __m512) {
        // SAFETY: `to` is 16 writable floats, exclusively borrowed; any alignment.
        unsafe { _mm512_storeu_ps(to.as_mut_ptr(), sums) }
    }

    fn lanes(values: &[f32]) -> &[f32; LANES] {
        values[..LANES].try_into().expect("16 floats")
    }

    fn lanes_mut(values: &mut [f32]) -> &mut [f32; LANES] {
        (&mut values[..LANES]).try_into().expect("16 floats")
    }

    /// [`super::softmax`] of a row of whole registers, its padding −∞.
    #[target_feature(enable = "avx512f")]
    fn softmax(row: &mut [f32]) {
        let mut max = _mm512_set1_ps(f32::NEG_INFINITY);
        for chunk in row.chunks_exact(LANES) {
            max = _mm512_max_ps(max, load(lanes(chunk)));
        }
        let max = _mm512_set1_ps(_mm512_reduce_max_ps(max));
        let mut sum = _mm512_setzero_ps();
        for chunk in row.chunks_exact_mut(LANES) {
            let weights = exp(_mm512_sub_ps(load(lanes(chunk)), max));
            sum = _mm512_add_ps(sum, weights);
            store(lanes_mut(chunk), weights);
        }
        let inv = _mm512_set1_ps(1.0 / _mm512_reduce_add_ps(sum));
        for chunk in row.chunks_exact_mut(LANES) {
            let weights = _mm512_mul_ps(load(lanes(chunk)), inv);
            store(lanes_mut(chunk), weights);
        }
    }

    /// [`super::exp_nonpositive`] of 16 lanes, operation for operation (the same bits).
    #[target_feature(enable = "avx512f")]
    pub(super) fn exp(x: __m512) -> __m512 {
        let set = _mm512_set1_ps;
        let (mul, add, sub) = (_mm512_mul_ps, _mm512_add_ps, _mm512_sub_ps);
        let underflows = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(x, set(super::EXP_LOWEST));
        // max(LOWEST, x) and min(0, ·) return their second operand for a NaN: NaN stays.
        let x = _mm512_min_ps(set(0.0), _mm512_max_ps(set(super::EXP_LOWEST), x));
        let round = set(super::EXP_ROUND);
        let n = sub(add(mul(x, set(std::f32::consts::LOG2_E)), round), round);
        let r = sub(
            sub(x, mul(n, set(super::LN2_HI))),
            mul(n, set(super::LN2_LO)),
        );
        let mut p = add(mul(r, set(super::EXP_POLY[0])), set(super::EXP_POLY[1]));
        for c in &super::EXP_POLY[2..] {
            p = add(mul(p, r), set(*c));
        }
        let y = add(add(mul(mul(p, r), r), r), set(1.0));
        let exponent = _mm512_add_epi32(_mm512_cvttps_epi32(n), _mm512_set1_epi32(127));
        let scaled = mul(y, _mm512_castsi512_ps(_mm512_slli_epi32::<23>(exponent)));
        _mm512_mask_mov_ps(scaled, underflows, _mm512_setzero_ps())
    }

    /// [`super::attend_text`] with each head's width a multiple of [`LANES`]. Per head, the
    /// text's queries (scaled), keys (transposed, zero-padded to whole registers) and values are
    /// gathered into scratch, and each block of [`QUERY_BLOCK`] queries interleaved, so every step works
    /// on whole registers: padded keys score −∞ and weigh 0, padded queries are computed and
    /// never written.
    #[target_feature(enable = "avx512f")]
    pub fn attend(rows: &[f32], hidden: usize, heads: usize, out: &mut [f32]) {
        let width = 3 * hidden;
        let head_dim = hidden / heads;
        assert!(
            head_dim.is_multiple_of(LANES),
            "attention: head width {head_dim}"
        );
        let scale = 1.0 / (head_dim as f32).sqrt();
        let len = rows.len() / width;
        let keys_len = len.next_multiple_of(LANES);
        let blocks = len.div_ceil(QUERY_BLOCK);
        let mut queries = vec![0.0f32; blocks * QUERY_BLOCK * head_dim];
        // One block's queries interleaved, block[d][q]: element d of its query q.
        let mut block = vec![[0.0f32; QUERY_BLOCK]; head_dim];
        let mut keys_t = vec![0.0f32; head_dim * keys_len];
        let mut values = vec![0.0f32; len * head_dim];
        // One block's scores, a row per query; then its weights transposed, a row per key.
        let mut scores = vec![0.0f32; QUERY_BLOCK * keys_len];
        let mut weights = vec![[0.0f32; QUERY_BLOCK]; len];
        for h in 0..heads {
            let q_at = h * head_dim;
            let k_at = hidden + h * head_dim;
            let v_at = 2 * hidden + h * head_dim;
            for (j, row) in rows.chunks_exact(width).enumerate() {
                let query = &mut queries[j * head_dim..][..head_dim];
                for (q, v) in query.iter_mut().zip(&row[q_at..q_at + head_dim]) {
                    *q = v * scale;
                }
                for (d, k) in row[k_at..k_at + head_dim].iter().enumerate() {
                    keys_t[d * keys_len + j] = *k;
                }
                values[j * head_dim..][..head_dim].copy_from_slice(&row[v_at..v_at + head_dim]);
            }
            for (b, block_queries) in queries.chunks_exact(QUERY_BLOCK * head_dim).enumerate() {
                for (d, interleaved) in block.iter_mut().enumerate() {
                    for (q, v) in interleaved.iter_mut().enumerate() {
                        *v = block_queries[q * head_dim + d];
                    }
                }
                for column in (0..keys_len).step_by(LANES) {
                    let mut sums = [_mm512_setzero_ps(); QUERY_BLOCK];
                    for (keys, query) in keys_t.chunks_exact(keys_len).zip(&block) {
                        let keys = load(lanes(&keys[column..]));
                        for (sum, q) in sums.iter_mut().zip(query) {
                            *sum = _mm512_fmadd_ps(_mm512_set1_ps(*q), keys, *sum);
                        }
                    }
                    for (row, sum) in scores.chunks_exact_mut(keys_len).zip(sums) {
                        store(lanes_mut(&mut row[column..]), sum);
                    }
                }
                for row in scores.chunks_exact_mut(keys_len) {
                    row[len..].fill(f32::NEG_INFINITY);
                    softmax(row);
                }
                for (j, weight) in weights.iter_mut().enumerate() {
                    for (w, row) in weight.iter_mut().zip(scores.chunks_exact(keys_len)) {
                        *w = row[j];
                    }
                }
                let first = b * QUERY_BLOCK;
                let block_len = QUERY_BLOCK.min(len - first);
                for column in (0..head_dim).step_by(LANES) {
                    let mut sums = [_mm512_setzero_ps(); QUERY_BLOCK];
                    for (value, weight) in values.chunks_exact(head_dim).zip(&weights) {
                        let value = load(lanes(&value[column..]));
                        for (sum, w) in sums.iter_mut().zip(weight) {
                            *sum = _mm512_fmadd_ps(_mm512_set1_ps(*w), value, *sum);
                        }
                    }
                    for (q, sum) in sums.into_iter().enumerate().take(block_len) {
                        let at = (first + q) * hidden + q_at + column;
                        store(lanes_mut(&mut out[at..]), sum);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    /// Deterministic values in [-2, 2), spread enough that softmaxes are far from uniform.
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut state = seed.wrapping_mul(6_364_136_223_846_793_005) | 1;
        (0..n)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                ((state >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
            })
            .collect()
    }

    /// The definition, in f64: softmax(q·kᵀ/√d)·v per head.
    fn reference(rows: &[f32], hidden: usize, heads: usize) -> Vec<f64> {
        let width = 3 * hidden;
        let head_dim = hidden / heads;
        let len = rows.len() / width;
        let at = |i: usize, j: usize| f64::from(rows[i * width + j]);
        let mut out = vec![0.0f64; len * hidden];
        for h in 0..heads {
            for i in 0..len {
                let scores: Vec<f64> = (0..len)
                    .map(|j| {
                        (0..head_dim)
                            .map(|d| at(i, h * head_dim + d) * at(j, hidden + h * head_dim + d))
                            .sum::<f64>()
                            / (head_dim as f64).sqrt()
                    })
                    .collect();
                let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let sum: f64 = weights.iter().sum();
                for d in 0..head_dim {
                    out[i * hidden + h * head_dim + d] = (0..len)
                        .map(|j| weights[j] / sum * at(j, 2 * hidden + h * head_dim + d))
                        .sum();
                }
            }
        }
        out
    }

    fn worst_error(ours: &[f32], reference: &[f64]) -> f64 {
        ours.iter()
            .zip(reference)
            .map(|(o, r)| (f64::from(*o) - r).abs())
            .fold(0.0, f64::max)
    }

    #[test]
    fn every_path_computes_attention_for_every_length() {
        // MiniLM's shape (12 heads of 32), and heads of 64 and of 24 (no whole registers).
        for (hidden, heads) in [(384, 12), (128, 2), (48, 2)] {
            for len in [1, 2, 3, 4, 5, 15, 16, 17, 33, 70] {
                let rows = values(len * 3 * hidden, (len * hidden) as u64);
                let expected = reference(&rows, hidden, heads);
                // Stale values in `out` must not leak into the result.
                let mut out = vec![f32::NAN; len * hidden];
                super::attend_text(&rows, hidden, heads, &mut out);
                let error = worst_error(&out, &expected);
                assert!(
                    error < 1e-5,
                    "{hidden}/{heads}, {len} tokens: error {error}"
                );
                let mut plain = vec![f32::NAN; len * hidden];
                super::portable(&rows, hidden, heads, &mut plain);
                let error = worst_error(&plain, &expected);
                assert!(
                    error < 1e-5,
                    "portable {hidden}/{heads}, {len}: error {error}"
                );
            }
        }
    }

    #[test]
    fn exp_matches_libm_on_the_softmax_range() {
        let mut worst_ulps = 0u32;
        for i in 0..=1_000_000 {
            let x = -(i as f32) / 10_000.0;
            let (ours, exact) = (super::exp_nonpositive(x), (x as f64).exp() as f32);
            if x >= -87.3 {
                worst_ulps = worst_ulps.max(ours.to_bits().abs_diff(exact.to_bits()));
            } else {
                assert_eq!(ours, 0.0, "exp({x}) underflows to 0");
            }
        }
        assert!(worst_ulps <= 2, "worst error {worst_ulps} ulp");
        assert_eq!(super::exp_nonpositive(0.0), 1.0);
        assert_eq!(super::exp_nonpositive(f32::NEG_INFINITY), 0.0);
        assert!(
            super::exp_nonpositive(f32::NAN).is_nan(),
            "a NaN score stays visible"
        );
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_kernels_exp_is_the_scalar_one() {
        use std::arch::x86_64::{_mm512_loadu_ps, _mm512_storeu_ps};
        if !std::is_x86_feature_detected!("avx512f") {
            eprintln!("skipped: no AVX-512F on this CPU");
            return;
        }
        let mut inputs: Vec<f32> = (0..=16 * 6_000).map(|i| -(i as f32) / 1_000.0).collect();
        inputs.extend([
            f32::NEG_INFINITY,
            f32::NAN,
            -87.3,
            -87.29,
            0.0,
            -0.0,
            -1e-30,
        ]);
        inputs.resize(inputs.len().next_multiple_of(16), -1.0);
        for chunk in inputs.chunks_exact(16) {
            let mut ours = [0.0f32; 16];
            // SAFETY: AVX-512F was detected above; both pointers cover 16 floats.
            unsafe {
                let x = _mm512_loadu_ps(chunk.as_ptr());
                _mm512_storeu_ps(ours.as_mut_ptr(), super::avx512::exp(x));
            }
            for (o, x) in ours.iter().zip(chunk) {
                let scalar = super::exp_nonpositive(*x);
                assert!(
                    o.to_bits() == scalar.to_bits() || (o.is_nan() && scalar.is_nan()),
                    "exp({x}): {o} vs {scalar}"
                );
            }
        }
    }

    #[test]
    fn dot_handles_every_length() {
        for n in 0..40 {
            let a: Vec<f32> = (0..n).map(|i| i as f32).collect();
            let b: Vec<f32> = (0..n).map(|i| 1.0 - i as f32 * 0.25).collect();
            let expected: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((super::dot(&a, &b) - expected).abs() <= 1e-3 * expected.abs().max(1.0));
        }
    }
}
