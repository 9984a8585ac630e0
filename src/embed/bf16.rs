//! bf16 matrix products on AVX512-BF16 (`vdpbf16ps`): the CPU backend's reduced-precision path.
//!
//! A linear layer's weight is rounded to bf16 once, at load, and packed in panels of 16 output
//! columns, each holding pairs of consecutive inputs, the layout `vdpbf16ps` multiplies: one
//! 512-bit load is 16 columns × 2 inputs. The activations are rounded to bf16 per product; every
//! sum is accumulated in f32. Each output element is the same sequence of pair products whatever
//! the batch holds, so a text's vector does not depend on its batch mates.
//!
//! No maintained crate offers a bf16 GEMM for x86 (the `gemm` crate's f16 path converts to f32
//! and multiplies in f32, and OpenBLAS's sbgemm is not in Debian 12's build), so this module is
//! the one hand-written kernel; every `unsafe` block in it is behind the run-time feature check
//! and the operand checks of [`gemm_nt`] (the packed operands' shapes are private to this module).

use std::ops::Range;

/// Output columns per panel: one 512-bit register of f32.
const PANEL: usize = 16;
/// Rows a micro-kernel call computes at once (with two panels: 16 accumulators of 32).
const ROWS: usize = 8;

/// Whether this CPU runs the bf16 path (AVX-512 F and BF16).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Rounds to the nearest bf16, ties to even (NaN stays NaN), as `vcvtneps2bf16` does.
pub fn round(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        return ((bits >> 16) | 0x40) as u16;
    }
    let rounded = bits.wrapping_add(0x7fff + ((bits >> 16) & 1));
    (rounded >> 16) as u16
}

/// A `[outputs × inputs]` weight, rounded to bf16 and packed for [`gemm_nt`].
pub struct PackedWeight {
    // Private: `gemm_nt`'s bounds checks rely on these matching `data`.
    outputs: usize,
    /// Input pairs (inputs rounded up to even).
    pairs: usize,
    /// `[panel][pair][column 0..16][2]`; columns past `outputs` are zero.
    data: Vec<u16>,
}

impl PackedWeight {
    /// Packs `weight`, row-major `[outputs × inputs]` (a PyTorch linear weight).
    pub fn pack(weight: &[f32], outputs: usize, inputs: usize) -> PackedWeight {
        assert!(
            weight.len() >= outputs * inputs,
            "PackedWeight: weight too short"
        );
        let pairs = inputs.div_ceil(2);
        let panels = outputs.div_ceil(PANEL);
        let mut data = vec![0u16; panels * pairs * PANEL * 2];
        for o in 0..outputs {
            let (panel, column) = (o / PANEL, o % PANEL);
            for i in 0..inputs {
                let at = ((panel * pairs + i / 2) * PANEL + column) * 2 + i % 2;
                data[at] = round(weight[o * inputs + i]);
            }
        }
        PackedWeight {
            outputs,
            pairs,
            data,
        }
    }
}

/// Activations rounded to bf16, each row padded to whole input pairs: the left operand of
/// [`gemm_nt`], made once per product and shared by the threads that split its columns.
pub struct PackedRows {
    rows: usize,
    pairs: usize,
    /// `[row][pair]`, each pair two bf16 in one u32 (the first input in the low half).
    data: Vec<u32>,
}

impl PackedRows {
    /// `a`, row-major `[rows × inputs]`.
    pub fn pack(a: &[f32], rows: usize, inputs: usize) -> PackedRows {
        assert!(a.len() >= rows * inputs, "PackedRows: operand too short");
        let pairs = inputs.div_ceil(2);
        let mut data = Vec::with_capacity(rows * pairs);
        for row in a.chunks_exact(inputs).take(rows) {
            let mut pair = row.chunks(2);
            for _ in 0..pairs {
                let p = pair.next().unwrap_or(&[]);
                let low = p.first().map_or(0, |&x| round(x));
                let high = p.get(1).map_or(0, |&x| round(x));
                data.push(u32::from(low) | (u32::from(high) << 16));
            }
        }
        PackedRows { rows, pairs, data }
    }
}

/// `c[rows × columns.len()] += a · w[columns]ᵀ`, `c` row-major with `columns.len()` columns.
/// `columns.start` must be a multiple of 16 (the callers split products into bands of 16).
///
/// # Panics
/// When [`available`] is false, or an operand does not match.
pub fn gemm_nt(a: &PackedRows, w: &PackedWeight, columns: Range<usize>, c: &mut [f32]) {
    assert!(available(), "bf16::gemm_nt without AVX512-BF16");
    assert_eq!(a.pairs, w.pairs, "bf16::gemm_nt: inputs differ");
    assert!(
        columns.start.is_multiple_of(PANEL)
            && columns.end <= w.outputs
            && columns.start <= columns.end,
        "bf16::gemm_nt: columns {columns:?} of {}",
        w.outputs
    );
    assert!(
        c.len() >= a.rows * columns.len(),
        "bf16::gemm_nt: c too short"
    );
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: `available()` checked AVX-512 F and BF16 at run time; the asserts above bound
        // every index the kernel reads (`a`'s rows × pairs, `w`'s panels of `columns`) and
        // writes (`c`'s rows × columns.len()).
        unsafe { kernel::product(a, w, columns, c) }
    }
}

#[cfg(target_arch = "x86_64")]
mod kernel {
    use std::arch::x86_64::*;
    use std::ops::Range;

    use super::{PackedRows, PackedWeight, PANEL, ROWS};

    /// # Safety
    /// AVX-512 F and BF16 must be present, and the operands as [`super::gemm_nt`] asserts.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub unsafe fn product(a: &PackedRows, w: &PackedWeight, columns: Range<usize>, c: &mut [f32]) {
        let width = columns.len();
        let first_panel = columns.start / PANEL;
        let panels = width.div_ceil(PANEL);
        let mut p = 0;
        while p < panels {
            let two = p + 1 < panels;
            for r0 in (0..a.rows).step_by(ROWS) {
                let rows = ROWS.min(a.rows - r0);
                // SAFETY: the caller's contract; `block` stays inside rows r0..r0+rows and
                // panels p..p+2 (or p+1) of `columns`.
                unsafe {
                    if two {
                        block::<2>(a, w, first_panel + p, p * PANEL, width, r0, rows, c)
                    } else {
                        block::<1>(a, w, first_panel + p, p * PANEL, width, r0, rows, c)
                    }
                }
            }
            p += if two { 2 } else { 1 };
        }
    }

    /// The same 512 bits, as 32 bf16 (the integer loads and broadcasts fill them).
    #[inline(always)]
    fn bf16x32(v: __m512i) -> __m512bh {
        // SAFETY: both are 512-bit vectors of plain bits; every bit pattern is a valid bf16.
        unsafe { std::mem::transmute::<__m512i, __m512bh>(v) }
    }

    /// Rows `r0..r0 + rows` × `P` panels from `panel` (output column `column` of `c`, which has
    /// `width` columns), over every input pair, added into `c`.
    ///
    /// # Safety
    /// As [`product`]; `rows` ≤ [`ROWS`].
    #[target_feature(enable = "avx512f,avx512bf16")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn block<const P: usize>(
        a: &PackedRows,
        w: &PackedWeight,
        panel: usize,
        column: usize,
        width: usize,
        r0: usize,
        rows: usize,
        c: &mut [f32],
    ) {
        let pairs = a.pairs;
        let mut acc = [[_mm512_setzero_ps(); P]; ROWS];
        let weights = w.data.as_ptr();
        let left = a.data.as_ptr();
        for k in 0..pairs {
            let mut b = [bf16x32(_mm512_setzero_si512()); P];
            for (q, b) in b.iter_mut().enumerate() {
                // SAFETY: panel + q < the packed panels and k < pairs: 32 u16 inside `w.data`.
                *b = bf16x32(unsafe {
                    _mm512_loadu_si512(weights.add(((panel + q) * pairs + k) * PANEL * 2).cast())
                });
            }
            for (r, acc) in acc.iter_mut().enumerate().take(rows) {
                // SAFETY: r0 + r < a.rows and k < pairs.
                let pair = unsafe { *left.add((r0 + r) * pairs + k) };
                let av = bf16x32(_mm512_set1_epi32(pair as i32));
                for (acc, b) in acc.iter_mut().zip(&b) {
                    *acc = _mm512_dpbf16_ps(*acc, av, *b);
                }
            }
        }
        let out = c.as_mut_ptr();
        for (r, acc) in acc.iter().enumerate().take(rows) {
            for (q, acc) in acc.iter().enumerate() {
                let start = column + q * PANEL;
                let valid = (width - start).min(PANEL);
                let mask: __mmask16 = if valid == PANEL {
                    0xffff
                } else {
                    (1u16 << valid) - 1
                };
                // SAFETY: row r0 + r < a.rows and columns start..start + valid < width, the
                // masked lanes only: inside `c`.
                unsafe {
                    let at = out.add((r0 + r) * width + start);
                    let sum = _mm512_add_ps(_mm512_maskz_loadu_ps(mask, at), *acc);
                    _mm512_mask_storeu_ps(at, mask, sum);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(a: &[f32], w: &[f32], rows: usize, outputs: usize, inputs: usize) -> Vec<f32> {
        let r = |x: f32| f32::from_bits(u32::from(round(x)) << 16);
        let mut c = vec![0.0; rows * outputs];
        for i in 0..rows {
            for o in 0..outputs {
                c[i * outputs + o] = (0..inputs)
                    .map(|k| r(a[i * inputs + k]) * r(w[o * inputs + k]))
                    .sum();
            }
        }
        c
    }

    #[test]
    fn rounding_is_to_nearest_even() {
        assert_eq!(round(1.0), 0x3f80);
        assert_eq!(round(f32::from_bits(0x3f80_8000)), 0x3f80); // a tie, to even
        assert_eq!(round(f32::from_bits(0x3f81_8000)), 0x3f82); // a tie, to even
        assert_eq!(round(f32::from_bits(0x3f80_8001)), 0x3f81);
        assert!(f32::from_bits(u32::from(round(f32::NAN)) << 16).is_nan());
    }

    /// Every shape the tails touch: odd inputs, a lone panel, a part panel, rows not a multiple
    /// of 8, a band that starts past the first panel.
    #[test]
    fn matches_the_definition_in_every_tail() {
        if !available() {
            eprintln!("no AVX512-BF16 here: the bf16 kernel is not tested on this machine");
            return;
        }
        for (rows, outputs, inputs, band) in [
            (1, 16, 2, 0..16),
            (3, 40, 7, 0..40),
            (9, 48, 384, 16..48),
            (17, 100, 33, 32..100),
            (8, 64, 1536, 0..64),
        ] {
            let a: Vec<f32> = (0..rows * inputs)
                .map(|i| ((i * 7919 % 1013) as f32 / 1013.0) - 0.5)
                .collect();
            let w: Vec<f32> = (0..outputs * inputs)
                .map(|i| ((i * 104_729 % 997) as f32 / 997.0) - 0.5)
                .collect();
            let want = reference(&a, &w, rows, outputs, inputs);
            let packed = PackedWeight::pack(&w, outputs, inputs);
            let left = PackedRows::pack(&a, rows, inputs);
            let width = band.len();
            let mut c = vec![1.0; rows * width];
            gemm_nt(&left, &packed, band.clone(), &mut c);
            for i in 0..rows {
                for (j, o) in band.clone().enumerate() {
                    let (got, want) = (c[i * width + j] - 1.0, want[i * outputs + o]);
                    assert!(
                        (got - want).abs() <= 1e-3 * (1.0 + want.abs()),
                        "{rows}x{outputs}x{inputs} {band:?}: c[{i}][{o}] = {got}, want {want}"
                    );
                }
            }
        }
    }

    /// A row's products do not depend on the rows beside it (the vector cache relies on it).
    #[test]
    fn a_row_does_not_depend_on_its_batch_mates() {
        if !available() {
            return;
        }
        let (outputs, inputs) = (48, 64);
        let w: Vec<f32> = (0..outputs * inputs).map(|i| (i as f32).sin()).collect();
        let packed = PackedWeight::pack(&w, outputs, inputs);
        let a: Vec<f32> = (0..11 * inputs).map(|i| (i as f32 * 0.37).cos()).collect();
        let mut all = vec![0.0; 11 * outputs];
        gemm_nt(
            &PackedRows::pack(&a, 11, inputs),
            &packed,
            0..outputs,
            &mut all,
        );
        let row5 = &a[5 * inputs..6 * inputs];
        let mut alone = vec![0.0; outputs];
        gemm_nt(
            &PackedRows::pack(row5, 1, inputs),
            &packed,
            0..outputs,
            &mut alone,
        );
        assert_eq!(&all[5 * outputs..6 * outputs], &alone[..]);
    }
}
