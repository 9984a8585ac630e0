//! fp32 matrix products over weights packed once at load: the CPU backend's fp32 products
//! where the CPU has AVX-512F, or AVX2 with FMA (OpenBLAS's elsewhere).
//!
//! OpenBLAS packs both operands on every call, the weight included. A lone text has 18 rows or
//! so, and repacking a weight of 384 × 1536 for them took 44% of its pass (perf, batch 1). Here
//! the weight is packed once, when the model is loaded, in panels of 16 output columns: one
//! 512-bit load is 16 columns of one input. The activations are read as they are, row-major.
//! Each output element is the same sequence of fused multiply-adds over its inputs whatever
//! the batch holds, so a text's vector does not depend on its batch mates.
//!
//! Two micro-kernels share the packing and the blocking into rows, panels and chunks of inputs
//! (each in its own loop order): 6 rows × 4 panels in 512-bit
//! registers (AVX-512F), and 6 rows × 1 panel in two 256-bit halves (AVX2 and FMA: 12
//! accumulators of the 16 registers). Both add each output's products in the same order, one
//! fused multiply-add per input, so their results are the same bits.
//!
//! Hand-written: OpenBLAS and the `gemm` crate have no pre-packed operand, and the kernel is the
//! bf16 module's vector kernel with f32 operands. Every `unsafe` block is behind the run-time
//! feature check and the operand checks of [`gemm_nt_on`] (the packed weight's shape is private to
//! this module).

use std::ops::Range;

/// Output columns per panel: one 512-bit register of f32 (two 256-bit ones).
const PANEL: usize = 16;
/// Rows a micro-kernel call computes at once. AVX-512: up to 4 panels, 24 accumulators, and
/// per input 4 loads of weights and 6 broadcasts for 24 fused multiply-adds. AVX2: 1 panel, 12
/// accumulators, 2 loads and 6 broadcasts for 12.
const ROWS: usize = 6;
/// Inputs a micro-kernel call takes at a time: four panels of 128 inputs are 32 KiB of weights,
/// which stay in a 48 KiB L1 cache while every block of rows passes over them.
const CHUNK_INPUTS: usize = 128;
/// The same for the AVX2 kernel: one panel of 384 inputs is 24 KiB of weights, and a call
/// loads and stores its sums a third as often as with 128 (they come from L3 when a band of
/// sums outgrows L2).
const AVX2_CHUNK_INPUTS: usize = 384;
/// Activations up to this size are taken whole for each group of panels by the AVX-512 kernel
/// (they stay in a core's L2 cache); larger ones a chunk of inputs at a time across every group.
const ACTIVATIONS_IN_L2: usize = 1 << 20;
/// Rows of activations the AVX2 kernel takes across every panel before the next rows: 48 rows
/// of a chunk of 384 inputs are 72 KiB, and their sums for 1536 outputs 288 KiB, both in a
/// 512 KiB L2 (96 and 24 rows measured no better, 510 worse).
const AVX2_BAND_ROWS: usize = 8 * ROWS;
/// Inputs ahead that the AVX2 kernel fetches its weights (a cache line each): about a memory
/// latency's worth of its work.
const AVX2_PREFETCH: usize = 64;

/// The instruction set a product runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    Avx512,
    Avx2,
}

impl Isa {
    /// Every one, widest first.
    pub const ALL: [Isa; 2] = [Isa::Avx512, Isa::Avx2];

    /// The widest this CPU has, if any.
    pub fn detect() -> Option<Isa> {
        Isa::ALL.into_iter().find(|isa| isa.present())
    }

    /// Whether this CPU runs it.
    pub fn present(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            match self {
                Isa::Avx512 => std::is_x86_feature_detected!("avx512f"),
                Isa::Avx2 => {
                    std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx512 => "AVX-512",
            Isa::Avx2 => "AVX2",
        }
    }

    /// Inputs a micro-kernel call takes at a time.
    fn chunk_inputs(self) -> usize {
        match self {
            Isa::Avx512 => CHUNK_INPUTS,
            Isa::Avx2 => AVX2_CHUNK_INPUTS,
        }
    }

    /// Panels a micro-kernel call computes at once.
    fn panels(self) -> usize {
        match self {
            Isa::Avx512 => 4,
            Isa::Avx2 => 1,
        }
    }
}

/// Whether this CPU runs these products (AVX-512F, or AVX2 with FMA).
pub fn available() -> bool {
    Isa::detect().is_some()
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
    let isa = Isa::detect().expect("fp32::gemm_nt without AVX-512F or AVX2 and FMA");
    gemm_nt_on(isa, a, rows, w, columns, c)
}

/// [`gemm_nt`] on a given instruction set (the tests run each one the CPU has).
///
/// # Panics
/// When the CPU does not run `isa`, or an operand does not match.
pub fn gemm_nt_on(
    isa: Isa,
    a: &[f32],
    rows: usize,
    w: &PackedWeight,
    columns: Range<usize>,
    c: &mut [f32],
) {
    assert!(
        isa.present(),
        "fp32::gemm_nt: this CPU has no {}",
        isa.name()
    );
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
    // SAFETY: `isa.present()` checked its features at run time; the asserts above bound every
    // index the kernel reads (`a`'s rows × inputs, `w`'s panels of `columns`) and writes (`c`'s
    // rows × columns.len()).
    unsafe {
        kernel::product(isa, a, rows, w, columns, c)
    }
}

#[cfg(target_arch = "x86_64")]
mod kernel {
    use std::arch::x86_64::*;
    use std::ops::Range;

    use super::{Isa, PackedWeight, ACTIVATIONS_IN_L2, AVX2_BAND_ROWS, AVX2_PREFETCH, PANEL, ROWS};

    /// # Safety
    /// `isa` must be present, and the operands as [`super::gemm_nt_on`] asserts.
    pub unsafe fn product(
        isa: Isa,
        a: &[f32],
        rows: usize,
        w: &PackedWeight,
        columns: Range<usize>,
        c: &mut [f32],
    ) {
        let width = columns.len();
        let first_panel = columns.start / PANEL;
        let panels = width.div_ceil(PANEL);
        let per_call = isa.panels();
        let groups: Vec<(usize, usize)> = (0..panels)
            .step_by(per_call)
            .map(|p| (p, per_call.min(panels - p)))
            .collect();
        let chunk = isa.chunk_inputs();
        let chunks: Vec<Range<usize>> = (0..w.inputs)
            .step_by(chunk)
            .map(|k0| k0..(k0 + chunk).min(w.inputs))
            .collect();
        let blocks = |(p, step): (usize, usize),
                      inputs: &Range<usize>,
                      band: Range<usize>,
                      c: &mut [f32]| {
            for r0 in band.clone().step_by(ROWS) {
                let at = Block {
                    panel: first_panel + p,
                    column: p * PANEL,
                    width,
                    r0,
                    rows: ROWS.min(band.end - r0),
                    inputs: inputs.clone(),
                };
                // SAFETY: the caller's contract; the block stays inside rows r0..r0+rows,
                // panels p..p+step of `columns` and the inputs.
                unsafe {
                    match (isa, step, at.rows) {
                        (Isa::Avx512, 4, ROWS) => block::<4, ROWS>(a, w, at, c),
                        (Isa::Avx512, 4, _) => block::<4, 0>(a, w, at, c),
                        (Isa::Avx512, 3, _) => block::<3, 0>(a, w, at, c),
                        (Isa::Avx512, 2, _) => block::<2, 0>(a, w, at, c),
                        (Isa::Avx512, _, _) => block::<1, 0>(a, w, at, c),
                        (Isa::Avx2, _, ROWS) => block_avx2::<ROWS>(a, w, at, c),
                        (Isa::Avx2, _, _) => block_avx2::<0>(a, w, at, c),
                    }
                }
            }
        };
        // Every order below adds each output's chunks in the same order, so the sums are the
        // same bits.
        match isa {
            // Activations that fit the L2 cache are passed over once per group of four panels,
            // larger ones a chunk of inputs at a time, for every group.
            Isa::Avx512 if rows * w.inputs * std::mem::size_of::<f32>() <= ACTIVATIONS_IN_L2 => {
                for group in &groups {
                    for inputs in &chunks {
                        blocks(*group, inputs, 0..rows, c);
                    }
                }
            }
            Isa::Avx512 => {
                for inputs in &chunks {
                    for group in &groups {
                        blocks(*group, inputs, 0..rows, c);
                    }
                }
            }
            // One panel a call passes over the activations four times as often: a band of
            // rows at a time (in L2 with its sums) for every panel, each chunk of inputs in
            // turn.
            Isa::Avx2 => {
                for inputs in &chunks {
                    for r0 in (0..rows).step_by(AVX2_BAND_ROWS) {
                        let band = r0..(r0 + AVX2_BAND_ROWS).min(rows);
                        for group in &groups {
                            blocks(*group, inputs, band.clone(), c);
                        }
                    }
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
                // SAFETY: row r0 + r < rows and columns start..start + valid ≤ width, the
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

    /// One [`Block`] × 1 panel on AVX2 and FMA, added into `c`: each panel's 16 columns as two
    /// 256-bit halves, 6 rows × 2 accumulators. The same sums as [`block`], in the same order.
    ///
    /// # Safety
    /// As [`product`], on a CPU with AVX2 and FMA; `at.rows` ≤ [`ROWS`].
    #[target_feature(enable = "avx2,fma")]
    unsafe fn block_avx2<const R: usize>(a: &[f32], w: &PackedWeight, at: Block, c: &mut [f32]) {
        let rows = if R == 0 { at.rows } else { R };
        let inputs = w.inputs;
        let out = c.as_mut_ptr();
        let valid = (at.width - at.column).min(PANEL);
        // Lane masks of the two halves: lane i is loaded and stored when i < valid (the high
        // bit of a lane set).
        let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        let half_mask = |h: usize| {
            let n = valid.saturating_sub(h * 8).min(8) as i32;
            _mm256_cmpgt_epi32(_mm256_set1_epi32(n), lanes)
        };
        let masks = [half_mask(0), half_mask(1)];
        // Plain loads and stores for a whole panel: a masked store is microcoded on some CPUs
        // (a dozen cycles and more on Zen 2), and a call stores twelve.
        let whole = valid == PANEL;
        let mut acc = [[_mm256_setzero_ps(); 2]; ROWS];
        for (r, acc) in acc.iter_mut().enumerate().take(rows) {
            for (h, acc) in acc.iter_mut().enumerate() {
                let at_c = out.wrapping_add((at.r0 + r) * at.width + at.column + h * 8);
                // SAFETY: row r0 + r < rows and the masked lanes, columns column + 8h + i <
                // column + valid ≤ width: inside `c`; masked-out lanes are not read.
                *acc = unsafe {
                    if whole {
                        _mm256_loadu_ps(at_c)
                    } else {
                        _mm256_maskload_ps(at_c, masks[h])
                    }
                };
            }
        }
        // One pointer per row, so that the loop's only address arithmetic is the input's
        // index; rows past `rows` repeat the last one and are never added.
        let row: [*const f32; ROWS] = std::array::from_fn(|r| {
            a.as_ptr()
                .wrapping_add((at.r0 + r.min(rows.max(1) - 1)) * inputs)
        });
        let panel = w.data.as_ptr().wrapping_add(at.panel * inputs * PANEL);
        let step = |k: usize, acc: &mut [[__m256; 2]; ROWS]| {
            // A lone text's few rows leave the weights' stream from memory exposed: each input
            // is a cache line's worth of the panel (64 bytes, not always aligned to one),
            // fetched ahead, past the chunk's end into what follows it in memory (the next
            // inputs, or the next panel after the last chunk); a prefetch never faults.
            _mm_prefetch::<_MM_HINT_T0>(panel.wrapping_add((k + AVX2_PREFETCH) * PANEL).cast());
            // SAFETY: the panel < the packed panels and k < inputs: 16 f32 inside `w.data`;
            // each row pointer is a row < rows of `a`, and k < inputs.
            unsafe {
                let b0 = _mm256_loadu_ps(panel.add(k * PANEL));
                let b1 = _mm256_loadu_ps(panel.add(k * PANEL + 8));
                for (acc, row) in acc.iter_mut().zip(&row).take(rows) {
                    let x = _mm256_broadcast_ss(&*row.add(k));
                    acc[0] = _mm256_fmadd_ps(x, b0, acc[0]);
                    acc[1] = _mm256_fmadd_ps(x, b1, acc[1]);
                }
            }
        };
        // Four inputs a turn: the loop's own instructions are a fifth of a turn's, not a
        // third (Zen 2 issues about five a cycle, and 12 fused multiply-adds take six).
        let mut k = at.inputs.start;
        while k + 4 <= at.inputs.end {
            step(k, &mut acc);
            step(k + 1, &mut acc);
            step(k + 2, &mut acc);
            step(k + 3, &mut acc);
            k += 4;
        }
        while k < at.inputs.end {
            step(k, &mut acc);
            k += 1;
        }
        for (r, acc) in acc.iter().enumerate().take(rows) {
            for (h, acc) in acc.iter().enumerate() {
                let at_c = out.wrapping_add((at.r0 + r) * at.width + at.column + h * 8);
                // SAFETY: as the loads above.
                unsafe {
                    if whole {
                        _mm256_storeu_ps(at_c, *acc)
                    } else {
                        _mm256_maskstore_ps(at_c, masks[h], *acc)
                    }
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

    /// The instruction sets this CPU runs, each named when it is not.
    fn present() -> Vec<Isa> {
        Isa::ALL
            .into_iter()
            .filter(|isa| {
                let present = isa.present();
                if !present {
                    eprintln!("skipped: no {} on this CPU", isa.name());
                }
                present
            })
            .collect()
    }

    #[test]
    fn matches_the_definition_in_every_tail() {
        for isa in present() {
            matches_the_definition(isa);
        }
    }

    fn matches_the_definition(isa: Isa) {
        // Rows around the micro-kernel's 6, columns around panels and bands of 16, and
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
                gemm_nt_on(isa, &a, rows, &packed, columns.clone(), &mut c);
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
                            "{isa:?} {rows}×{outputs}×{inputs}, columns {columns:?}: c[{i}][{j}] = {got}, not {expected}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_row_does_not_depend_on_its_batch_mates() {
        // AVX-512: 70 rows of 384 inputs are taken whole per group of panels; 200 of 1536
        // (1.2 MiB) a chunk of inputs at a time: a row alone is always the first order. AVX2:
        // both put rows in a second band of 48, and 1536 inputs are four chunks.
        for (rows, outputs, inputs) in [(70, 48, 384), (200, 80, 1536)] {
            assert_eq!(
                rows * inputs * 4 > ACTIVATIONS_IN_L2,
                rows == 200,
                "each order is covered"
            );
            for isa in present() {
                batch_mates(isa, rows, outputs, inputs);
            }
        }
    }

    /// Each row of a batch on `isa` is, bit for bit, the row alone on every instruction set:
    /// a vector does not depend on its batch mates, nor on the CPU's vector width.
    fn batch_mates(isa: Isa, rows: usize, outputs: usize, inputs: usize) {
        let w = PackedWeight::pack(&values(outputs * inputs, 3), outputs, inputs);
        let batch = values(rows * inputs, 4);
        let mut all = vec![0.0; rows * outputs];
        gemm_nt_on(isa, &batch, rows, &w, 0..outputs, &mut all);
        for (row, alone_on) in [0, 7, 8, 35, rows - 1]
            .into_iter()
            .flat_map(|row| present().into_iter().map(move |other| (row, other)))
        {
            let mut alone = vec![0.0; outputs];
            gemm_nt_on(
                alone_on,
                &batch[row * inputs..],
                1,
                &w,
                0..outputs,
                &mut alone,
            );
            assert_eq!(
                alone.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                all[row * outputs..][..outputs]
                    .iter()
                    .map(|v| v.to_bits())
                    .collect::<Vec<_>>(),
                "row {row} of {rows} on {isa:?}, alone on {alone_on:?}"
            );
        }
    }
}
