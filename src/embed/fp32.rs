//! fp32 matrix products on AVX-512 over weights packed once at load: the CPU backend's fp32
//! products where the CPU has AVX-512F (OpenBLAS's elsewhere).
//!
//! OpenBLAS packs both operands on every call, the weight included. A lone text has 18 rows or
//! so, and repacking a weight of 384 × 1536 for them took 44% of its pass (perf, batch 1). Here
//! the weight is packed once, when the model is loaded, in panels of 16 output columns: one
//! 512-bit load is 16 columns of one input. The activations are read as they are, row-major.
//! Each output element is the same sequence of fused multiply-adds over its inputs whatever
//! the batch holds, so a text's vector does not depend on its batch mates.
//!
//! Hand-written: OpenBLAS and the `gemm` crate have no pre-packed operand, and the kernel is the
//! bf16 module's vector kernel with f32 operands. Every `unsafe` block is behind the run-time
//! feature check and the operand checks of [`gemm_nt`] (the packed weight's shape is private to
//! this module).

use std::ops::Range;

/// Output columns per panel: one 512-bit register of f32.
const PANEL: usize = 16;
/// Rows a micro-kernel call computes at once, with up to [`PANELS`] panels: 24 accumulators,
/// and per input 4 loads of weights and 6 broadcasts for 24 fused multiply-adds.
const ROWS: usize = 6;
/// Panels a micro-kernel call computes at once.
const PANELS: usize = 4;
/// Inputs a micro-kernel call takes at a time: four panels of 128 inputs are 32 KiB of weights,
/// which stay in a 48 KiB L1 cache while every block of rows passes over them.
const CHUNK_INPUTS: usize = 128;
/// Activations up to this size are taken whole for each group of panels (they stay in a core's
/// L2 cache); larger ones a chunk of inputs at a time across every group.
const ACTIVATIONS_IN_L2: usize = 1 << 20;

/// Whether this CPU runs these products (AVX-512F).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// A `[outputs × inputs]` weight, packed for [`gemm_nt`].
pub struct PackedWeight {
    // Private: `gemm_nt`'s bounds checks rely on these matching `data`.
    outputs: usize,
    inputs: usize,
    /// `[panel][input][column 0..16]`; columns past `outputs` are zero.
    data: Vec<f32>,
}

impl PackedWeight {
    /// Packs `weight`, row-major `[outputs × inputs]` (a PyTorch linear weight).
    pub fn pack(weight: &[f32], outputs: usize, inputs: usize) -> PackedWeight {
        assert!(
            weight.len() >= outputs * inputs,
            "PackedWeight: weight too short"
        );
        let panels = outputs.div_ceil(PANEL);
        let mut data = vec![0.0f32; panels * inputs * PANEL];
        for (o, row) in weight.chunks_exact(inputs.max(1)).take(outputs).enumerate() {
            let (panel, column) = (o / PANEL, o % PANEL);
            for (i, w) in row.iter().enumerate() {
                data[(panel * inputs + i) * PANEL + column] = *w;
            }
        }
        PackedWeight {
            outputs,
            inputs,
            data,
        }
    }
}

/// `c[rows × columns.len()] += a · w[columns]ᵀ`: `a` row-major `[rows × inputs]`, `c` row-major
/// with `columns.len()` columns. `columns.start` must be a multiple of 16 (the callers split
/// products into bands of 16).
///
/// # Panics
/// When [`available`] is false, or an operand does not match.
pub fn gemm_nt(a: &[f32], rows: usize, w: &PackedWeight, columns: Range<usize>, c: &mut [f32]) {
    assert!(available(), "fp32::gemm_nt without AVX-512F");
    assert!(a.len() >= rows * w.inputs, "fp32::gemm_nt: a too short");
    assert!(
        columns.start.is_multiple_of(PANEL)
            && columns.end <= w.outputs
            && columns.start <= columns.end,
        "fp32::gemm_nt: columns {columns:?} of {}",
        w.outputs
    );
    assert!(
        c.len() >= rows * columns.len(),
        "fp32::gemm_nt: c too short"
    );
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `available()` checked AVX-512F at run time; the asserts above bound every index
    // the kernel reads (`a`'s rows × inputs, `w`'s panels of `columns`) and writes (`c`'s
    // rows × columns.len()).
    unsafe {
        kernel::product(a, rows, w, columns, c)
    }
}

#[cfg(target_arch = "x86_64")]
mod kernel {
    use std::arch::x86_64::*;
    use std::ops::Range;

    use super::{PackedWeight, ACTIVATIONS_IN_L2, CHUNK_INPUTS, PANEL, PANELS, ROWS};

    /// # Safety
    /// AVX-512F must be present, and the operands as [`super::gemm_nt`] asserts.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn product(
        a: &[f32],
        rows: usize,
        w: &PackedWeight,
        columns: Range<usize>,
        c: &mut [f32],
    ) {
        let width = columns.len();
        let first_panel = columns.start / PANEL;
        let panels = width.div_ceil(PANEL);
        let groups: Vec<(usize, usize)> = (0..panels)
            .step_by(PANELS)
            .map(|p| (p, PANELS.min(panels - p)))
            .collect();
        let chunks: Vec<Range<usize>> = (0..w.inputs)
            .step_by(CHUNK_INPUTS)
            .map(|k0| k0..(k0 + CHUNK_INPUTS).min(w.inputs))
            .collect();
        let blocks = |(p, step): (usize, usize), inputs: &Range<usize>, c: &mut [f32]| {
            for r0 in (0..rows).step_by(ROWS) {
                let at = Block {
                    panel: first_panel + p,
                    column: p * PANEL,
                    width,
                    r0,
                    rows: ROWS.min(rows - r0),
                    inputs: inputs.clone(),
                };
                // SAFETY: the caller's contract; the block stays inside rows r0..r0+rows,
                // panels p..p+step of `columns` and the inputs.
                unsafe {
                    match (step, at.rows) {
                        (4, ROWS) => block::<4, ROWS>(a, w, at, c),
                        (4, _) => block::<4, 0>(a, w, at, c),
                        (3, _) => block::<3, 0>(a, w, at, c),
                        (2, _) => block::<2, 0>(a, w, at, c),
                        _ => block::<1, 0>(a, w, at, c),
                    }
                }
            }
        };
        // Either order adds each output's chunks in the same order, so the sums are the same
        // bits: activations that fit the L2 cache are passed over once per group of panels,
        // larger ones a chunk of inputs at a time, for every group.
        if rows * w.inputs * std::mem::size_of::<f32>() <= ACTIVATIONS_IN_L2 {
            for group in &groups {
                for inputs in &chunks {
                    blocks(*group, inputs, c);
                }
            }
        } else {
            for inputs in &chunks {
                for group in &groups {
                    blocks(*group, inputs, c);
                }
            }
        }
    }

    /// Where a micro-kernel call works: rows `r0..r0 + rows` × panels from `panel`, which is
    /// output column `column` of `c` (`width` columns), over `inputs`.
    #[derive(Clone)]
    struct Block {
        panel: usize,
        column: usize,
        width: usize,
        r0: usize,
        rows: usize,
        inputs: Range<usize>,
    }

    /// One [`Block`] × `P` panels, added into `c`: its sums start from `c` and end there.
    /// `R` is the block's rows when known at compile time (a whole block: no per-row branch in
    /// the inner loop), or 0 for `at.rows`.
    ///
    /// # Safety
    /// As [`product`]; `at.rows` ≤ [`ROWS`].
    #[target_feature(enable = "avx512f")]
    unsafe fn block<const P: usize, const R: usize>(
        a: &[f32],
        w: &PackedWeight,
        at: Block,
        c: &mut [f32],
    ) {
        let rows = if R == 0 { at.rows } else { R };
        let inputs = w.inputs;
        let out = c.as_mut_ptr();
        let mask = |q: usize| -> (usize, __mmask16) {
            let start = at.column + q * PANEL;
            let valid = (at.width - start).min(PANEL);
            let mask = if valid == PANEL {
                0xffff
            } else {
                (1u16 << valid) - 1
            };
            (start, mask)
        };
        let mut acc = [[_mm512_setzero_ps(); P]; ROWS];
        for (r, acc) in acc.iter_mut().enumerate().take(rows) {
            for (q, acc) in acc.iter_mut().enumerate() {
                let (start, mask) = mask(q);
                // SAFETY: row r0 + r < rows and columns start..start + valid < width, the
                // masked lanes only: inside `c`.
                *acc =
                    unsafe { _mm512_maskz_loadu_ps(mask, out.add((at.r0 + r) * at.width + start)) };
            }
        }
        let weights = w.data.as_ptr();
        let left = a.as_ptr();
        for k in at.inputs.clone() {
            let mut b = [_mm512_setzero_ps(); P];
            for (q, b) in b.iter_mut().enumerate() {
                // SAFETY: panel + q < the packed panels and k < inputs: 16 f32 inside `w.data`.
                *b = unsafe { _mm512_loadu_ps(weights.add(((at.panel + q) * inputs + k) * PANEL)) };
            }
            for (r, acc) in acc.iter_mut().enumerate().take(rows) {
                // SAFETY: r0 + r < rows and k < inputs: inside `a`.
                let x = _mm512_set1_ps(unsafe { *left.add((at.r0 + r) * inputs + k) });
                for (acc, b) in acc.iter_mut().zip(&b) {
                    *acc = _mm512_fmadd_ps(x, *b, *acc);
                }
            }
        }
        for (r, acc) in acc.iter().enumerate().take(rows) {
            for (q, acc) in acc.iter().enumerate() {
                let (start, mask) = mask(q);
                // SAFETY: as the loads above.
                unsafe {
                    _mm512_mask_storeu_ps(out.add((at.r0 + r) * at.width + start), mask, *acc)
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 7919 + seed * 104_729) % 2003) as f32 / 1001.0 - 1.0)
            .collect()
    }

    #[test]
    fn matches_the_definition_in_every_tail() {
        if !available() {
            eprintln!("skipped: no AVX-512F on this CPU");
            return;
        }
        // Rows around the micro-kernel's 8, columns around panels and bands of 16, and
        // MiniLM's inputs.
        for (rows, outputs, inputs) in [
            (1, 16, 384),
            (5, 40, 5),
            (6, 64, 1),
            (7, 80, 3),
            (13, 112, 2),
            (18, 1536, 384),
            (17, 384, 1536),
            (12, 64, 300),
            (3, 17, 64),
            (0, 16, 8),
        ] {
            let a = values(rows * inputs, 1);
            let w = values(outputs * inputs, 2);
            let packed = PackedWeight::pack(&w, outputs, inputs);
            for columns in [0..outputs, 16.min(outputs)..outputs] {
                let bias = 0.25;
                let mut c = vec![bias; rows * columns.len()];
                gemm_nt(&a, rows, &packed, columns.clone(), &mut c);
                for i in 0..rows {
                    for (j, o) in columns.clone().enumerate() {
                        let expected: f64 = f64::from(bias)
                            + (0..inputs)
                                .map(|k| {
                                    f64::from(a[i * inputs + k]) * f64::from(w[o * inputs + k])
                                })
                                .sum::<f64>();
                        let got = f64::from(c[i * columns.len() + j]);
                        assert!(
                            (got - expected).abs() <= 1e-4 * expected.abs().max(1.0),
                            "{rows}×{outputs}×{inputs}, columns {columns:?}: c[{i}][{j}] = {got}, not {expected}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_row_does_not_depend_on_its_batch_mates() {
        if !available() {
            eprintln!("skipped: no AVX-512F on this CPU");
            return;
        }
        // 70 rows of 384 inputs are taken whole per group of panels; 200 of 1536 (1.2 MiB) a
        // chunk of inputs at a time: a row alone is always the first order.
        for (rows, outputs, inputs) in [(70, 48, 384), (200, 80, 1536)] {
            assert_eq!(
                rows * inputs * 4 > ACTIVATIONS_IN_L2,
                rows == 200,
                "each order is covered"
            );
            batch_mates(rows, outputs, inputs);
        }
    }

    fn batch_mates(rows: usize, outputs: usize, inputs: usize) {
        let w = PackedWeight::pack(&values(outputs * inputs, 3), outputs, inputs);
        let batch = values(rows * inputs, 4);
        let mut all = vec![0.0; rows * outputs];
        gemm_nt(&batch, rows, &w, 0..outputs, &mut all);
        for row in [0, 7, 8, 35, rows - 1] {
            let mut alone = vec![0.0; outputs];
            gemm_nt(&batch[row * inputs..], 1, &w, 0..outputs, &mut alone);
            assert_eq!(
                alone.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                all[row * outputs..][..outputs]
                    .iter()
                    .map(|v| v.to_bits())
                    .collect::<Vec<_>>(),
                "row {row}"
            );
        }
    }
}
