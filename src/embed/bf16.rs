//! bf16 matrix products on AMX tiles (`tdpbf16ps`) or AVX512-BF16 (`vdpbf16ps`): the CPU
//! backend's reduced-precision path.
//!
//! A linear layer's weight is rounded to bf16 once, at load, and packed in panels of 16 output
//! columns, each holding pairs of consecutive inputs, the layout `vdpbf16ps` multiplies: one
//! 512-bit load is 16 columns × 2 inputs. The activations are rounded to bf16 per product; every
//! sum is accumulated in f32. Each output element is the same sequence of pair products whatever
//! the batch holds, so a text's vector does not depend on its batch mates.
//!
//! Two kernels compute the same products: on a CPU with AMX (AMX-TILE and AMX-BF16, and a kernel
//! that grants the process the tile state) `tdpbf16ps` over 16 × 16 tiles of the same packed
//! operands, 32 rows × 32 columns at a time; elsewhere `vdpbf16ps` on AVX-512 registers. The
//! tiles need whole tiles of inputs (a multiple of 32, as every MiniLM product has); other shapes
//! take the vector kernel. Within a kernel, an output element's sums do not depend on the other
//! rows.
//!
//! No maintained crate offers a bf16 GEMM for x86 (the `gemm` crate's f16 path converts to f32
//! and multiplies in f32, and OpenBLAS's sbgemm is not in Debian 12's build), so this module is
//! hand-written (as [`super::fp32`], its f32 sibling); every `unsafe` block in it is behind the run-time feature check
//! and the operand checks of [`gemm_nt`] (the packed operands' shapes are private to this module).

use std::ops::Range;

/// Output columns per panel: one 512-bit register of f32.
const PANEL: usize = 16;
/// Rows a micro-kernel call computes at once (with two panels: 16 accumulators of 32).
const ROWS: usize = 8;
/// An AMX tile: 16 rows of 64 bytes (16 input pairs of bf16, or 16 f32).
const TILE_ROWS: usize = 16;
const TILE_PAIRS: usize = 16;
/// Rows the tile kernel computes at once (two tiles), so [`PackedRows`] pads to a multiple.
const TILE_BLOCK_ROWS: usize = 2 * TILE_ROWS;
/// Input pairs the tile kernel takes at a time (a multiple of [`TILE_PAIRS`]).
const CHUNK_PAIRS: usize = 192;

/// The kernel a product runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// AMX tiles (`tdpbf16ps`).
    Tiles,
    /// AVX-512 registers (`vdpbf16ps`).
    Vectors,
}

impl Kernel {
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Tiles => "amx",
            Kernel::Vectors => "avx512",
        }
    }
}

/// The kernel products with whole tiles of inputs run on this CPU; `None` without AVX512-BF16.
pub fn kernel() -> Option<Kernel> {
    if !available() {
        None
    } else if tiles_available() {
        Some(Kernel::Tiles)
    } else {
        Some(Kernel::Vectors)
    }
}

/// Whether AMX tiles may be used: the CPU has AMX-TILE and AMX-BF16 and the kernel granted this
/// process the tile data state (asked once, for the whole process).
fn tiles_available() -> bool {
    static GRANTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *GRANTED.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            available() && tiles::request()
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    })
}

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

/// Whether the CPU is AMD's. Its AVX512-BF16 CPUs (Zen 4 and later) run `vdpbf16ps` at the rate
/// of an fp32 FMA with twice the products: our register kernel reached 173–180 GFLOP/s a core on
/// one layer's shapes on a Zen 4 against 87–98 for the fp32 kernel, where an Intel Xeon's
/// reached about 75 against 100+ (benches/README.md).
pub fn is_amd() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        let vendor = std::arch::x86_64::__cpuid(0);
        // "AuthenticAMD" in EBX, EDX, ECX.
        (vendor.ebx, vendor.edx, vendor.ecx) == (0x6874_7541, 0x6974_6e65, 0x444d_4163)
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
        #[cfg(target_arch = "x86_64")]
        if available() && inputs.is_multiple_of(32) {
            let mut data = vec![0u32; rows.next_multiple_of(TILE_BLOCK_ROWS) * pairs];
            // SAFETY: AVX-512 F and BF16 checked at run time; `a` holds rows × inputs values
            // and `data` at least rows × pairs (asserted and allocated above).
            unsafe { kernel::round_rows(&a[..rows * inputs], &mut data[..rows * pairs]) };
            return PackedRows { rows, pairs, data };
        }
        // Zero rows after the last, to whole blocks of the tile kernel, which reads them.
        let mut data = Vec::with_capacity(rows.next_multiple_of(TILE_BLOCK_ROWS) * pairs);
        for row in a.chunks_exact(inputs).take(rows) {
            let mut pair = row.chunks(2);
            for _ in 0..pairs {
                let p = pair.next().unwrap_or(&[]);
                let low = p.first().map_or(0, |&x| round(x));
                let high = p.get(1).map_or(0, |&x| round(x));
                data.push(u32::from(low) | (u32::from(high) << 16));
            }
        }
        data.resize(rows.next_multiple_of(TILE_BLOCK_ROWS) * pairs, 0);
        PackedRows { rows, pairs, data }
    }
}

/// `c[rows × columns.len()] += a · w[columns]ᵀ`, `c` row-major with `columns.len()` columns.
/// `columns.start` must be a multiple of 16 (the callers split products into bands of 16).
///
/// # Panics
/// When [`available`] is false, or an operand does not match.
pub fn gemm_nt(a: &PackedRows, w: &PackedWeight, columns: Range<usize>, c: &mut [f32]) {
    let kernel = if a.pairs >= TILE_PAIRS && a.pairs.is_multiple_of(TILE_PAIRS) {
        kernel()
    } else {
        available().then_some(Kernel::Vectors)
    };
    gemm_nt_with(
        kernel.expect("bf16::gemm_nt without AVX512-BF16"),
        a,
        w,
        columns,
        c,
    );
}

/// [`gemm_nt`] on the given kernel.
///
/// # Panics
/// When the kernel is not available here, or an operand does not match.
fn gemm_nt_with(
    kernel: Kernel,
    a: &PackedRows,
    w: &PackedWeight,
    columns: Range<usize>,
    c: &mut [f32],
) {
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
    match kernel {
        Kernel::Tiles => {
            assert!(
                tiles_available() && a.pairs >= TILE_PAIRS && a.pairs.is_multiple_of(TILE_PAIRS),
                "bf16::gemm_nt: no AMX tiles, or inputs not whole tiles"
            );
            // SAFETY: the tile state was granted and the CPU has AMX-TILE and AMX-BF16; the
            // inputs are whole tiles, `a` is padded to whole blocks of rows (`PackedRows::pack`)
            // and the asserts above bound `w`'s panels of `columns` and `c`.
            unsafe { tiles::product(a, w, columns, c) }
        }
        Kernel::Vectors => {
            // SAFETY: `available()` checked AVX-512 F and BF16 at run time; the asserts above
            // bound every index the kernel reads (`a`'s rows × pairs, `w`'s panels of
            // `columns`) and writes (`c`'s rows × columns.len()).
            unsafe { kernel::product(a, w, columns, c) }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod tiles {
    use std::arch::asm;
    use std::ops::Range;

    use super::{
        PackedRows, PackedWeight, CHUNK_PAIRS, PANEL, TILE_BLOCK_ROWS, TILE_PAIRS, TILE_ROWS,
    };

    /// `arch_prctl` requests (asm/prctl.h) and the tile data's xsave feature number.
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;

    /// Whether the CPU has AMX-TILE and AMX-BF16 (CPUID leaf 7, EDX bits 24 and 22), and the
    /// kernel grants this process the tile data state (Linux 5.16 and later).
    pub fn request() -> bool {
        if std::arch::x86_64::__cpuid(0).eax < 7 {
            return false;
        }
        let edx = std::arch::x86_64::__cpuid_count(7, 0).edx;
        if edx & (1 << 22) == 0 || edx & (1 << 24) == 0 {
            return false;
        }
        // SAFETY: arch_prctl(ARCH_REQ_XCOMP_PERM, n) takes two integers and only widens the
        // xsave features this process may use; a kernel without them refuses with an error.
        unsafe {
            libc::syscall(
                libc::SYS_arch_prctl,
                ARCH_REQ_XCOMP_PERM,
                XFEATURE_XTILEDATA,
            ) == 0
        }
    }

    /// The tile configuration `ldtilecfg` reads (palette 1): tiles 0–3 hold sums, 4–5 rows of
    /// the left operand, 6–7 weight panels; each 16 rows of 64 bytes.
    #[repr(C, align(64))]
    struct TileConfig {
        palette: u8,
        start_row: u8,
        reserved: [u8; 14],
        bytes_per_row: [u16; 16],
        rows: [u8; 16],
    }

    /// Four tiles of sums as `tilestored` writes them: `[tile][row][column]`.
    #[repr(C, align(64))]
    struct Sums([f32; 4 * TILE_ROWS * PANEL]);

    /// One block of 32 rows × 32 columns: the four sum tiles at `sums` (0, 1: the first 16 rows,
    /// columns 0..16 and 16..32; 2, 3: the next 16 rows), each 16 rows of 64 bytes `sum_row`
    /// bytes apart, are loaded, given `steps` steps of 16 input pairs, and stored back. Each step
    /// multiplies 16 rows of each left operand (`a`, rows `row` bytes apart) by 1,024 bytes of
    /// each weight panel (`b`), then moves `a` on by 64 bytes and `b` by 1,024.
    ///
    /// # Safety
    /// The tiles are configured as [`product`] configures them; every byte named above lies in
    /// memory the caller may read (and, for the sums, write); `steps` ≥ 1.
    #[inline(always)]
    unsafe fn block(
        sums: [*mut f32; 4],
        sum_row: usize,
        a: [*const u32; 2],
        row: usize,
        b: [*const u16; 2],
        steps: usize,
    ) {
        // SAFETY: the caller's contract.
        unsafe {
            asm!(
                "tileloadd tmm0, [{c0} + {c_row}*1]",
                "tileloadd tmm1, [{c1} + {c_row}*1]",
                "tileloadd tmm2, [{c2} + {c_row}*1]",
                "tileloadd tmm3, [{c3} + {c_row}*1]",
                "2:",
                "tileloadd tmm4, [{a0} + {row}*1]",
                "tileloadd tmm5, [{a1} + {row}*1]",
                "tileloadd tmm6, [{b0} + {tile_row}*1]",
                "tileloadd tmm7, [{b1} + {tile_row}*1]",
                "tdpbf16ps tmm0, tmm4, tmm6",
                "tdpbf16ps tmm1, tmm4, tmm7",
                "tdpbf16ps tmm2, tmm5, tmm6",
                "tdpbf16ps tmm3, tmm5, tmm7",
                "add {a0}, 64",
                "add {a1}, 64",
                "add {b0}, 1024",
                "add {b1}, 1024",
                "dec {steps}",
                "jnz 2b",
                "tilestored [{c0} + {c_row}*1], tmm0",
                "tilestored [{c1} + {c_row}*1], tmm1",
                "tilestored [{c2} + {c_row}*1], tmm2",
                "tilestored [{c3} + {c_row}*1], tmm3",
                a0 = inout(reg) a[0] => _,
                a1 = inout(reg) a[1] => _,
                b0 = inout(reg) b[0] => _,
                b1 = inout(reg) b[1] => _,
                steps = inout(reg) steps => _,
                c0 = in(reg) sums[0],
                c1 = in(reg) sums[1],
                c2 = in(reg) sums[2],
                c3 = in(reg) sums[3],
                c_row = in(reg) sum_row,
                row = in(reg) row,
                tile_row = in(reg) 64usize,
                options(nostack),
            );
        }
    }

    /// # Safety
    /// As [`super::gemm_nt_with`] asserts for [`super::Kernel::Tiles`].
    pub unsafe fn product(a: &PackedRows, w: &PackedWeight, columns: Range<usize>, c: &mut [f32]) {
        let mut config = TileConfig {
            palette: 1,
            start_row: 0,
            reserved: [0; 14],
            bytes_per_row: [0; 16],
            rows: [0; 16],
        };
        for tile in 0..8 {
            config.bytes_per_row[tile] = 64;
            config.rows[tile] = TILE_ROWS as u8;
        }
        // SAFETY: a valid palette-1 configuration, 64 bytes in a live aligned local; AMX is
        // present and granted (the caller's contract).
        unsafe { asm!("ldtilecfg [{}]", in(reg) &config, options(nostack, readonly)) };
        let width = columns.len();
        let first_panel = columns.start / PANEL;
        let panels = width.div_ceil(PANEL);
        let pairs = a.pairs;
        let panel_u16 = pairs * PANEL * 2;
        let mut sums = Sums([0.0; 4 * TILE_ROWS * PANEL]);
        // Inputs a chunk at a time, so that two weight panels' chunk (24 KiB) stays in the L1
        // cache across every block of rows; the sums wait in `c` between chunks (an exact f32
        // store and load: each element still gets its additions in order).
        for k0 in (0..pairs).step_by(CHUNK_PAIRS) {
            let steps = CHUNK_PAIRS.min(pairs - k0) / TILE_PAIRS;
            for p in (0..panels).step_by(2) {
                let second = p + 1 < panels;
                let b0 = w.data[(first_panel + p) * panel_u16 + k0 * PANEL * 2..].as_ptr();
                // A lone last panel is multiplied twice and its copy dropped: one code path.
                let b1 = w.data
                    [(first_panel + p + usize::from(second)) * panel_u16 + k0 * PANEL * 2..]
                    .as_ptr();
                for r0 in (0..a.rows).step_by(TILE_BLOCK_ROWS) {
                    let a0 = a.data[r0 * pairs + k0..].as_ptr();
                    let a1 = a.data[(r0 + TILE_ROWS) * pairs + k0..].as_ptr();
                    if second && r0 + TILE_BLOCK_ROWS <= a.rows && (p + 2) * PANEL <= width {
                        // A whole block of `c`: its sums are loaded, added to and stored in place.
                        let last = (r0 + TILE_BLOCK_ROWS - 1) * width + (p + 2) * PANEL;
                        assert!(last <= c.len(), "bf16 tiles: a block outside c");
                        let c0 = c.as_mut_ptr().wrapping_add(r0 * width + p * PANEL);
                        let c2 = c0.wrapping_add(TILE_ROWS * width);
                        // SAFETY: as below for `a` and `w`; the sum tiles are rows r0..r0 + 32 ×
                        // columns p·16..p·16 + 32 of `c`, whose last element ends at `last`, inside `c`
                        // (asserted just above), read and written through pointers derived from all of
                        // `c`, at a stride of one row.
                        unsafe {
                            block(
                                [c0, c0.wrapping_add(PANEL), c2, c2.wrapping_add(PANEL)],
                                width * 4,
                                [a0, a1],
                                pairs * 4,
                                [b0, b1],
                                steps,
                            )
                        };
                        continue;
                    }
                    // A block at an edge: its valid part of `c` is copied into `sums` and the sums
                    // added there, then copied back, so every element of `c` gets the same additions
                    // in the same order as in a whole block (a row does not depend on its batch
                    // mates).
                    let edge = |half: usize, q: usize| {
                        let start = (p + q) * PANEL;
                        let valid = (width - start).min(PANEL);
                        let rows = a.rows.saturating_sub(r0 + half * TILE_ROWS).min(TILE_ROWS);
                        (half * 2 + q, start, valid, rows)
                    };
                    sums.0.fill(0.0);
                    for half in 0..2 {
                        for q in 0..1 + usize::from(second) {
                            let (tile, start, valid, rows) = edge(half, q);
                            for r in 0..rows {
                                let row = r0 + half * TILE_ROWS + r;
                                sums.0[(tile * TILE_ROWS + r) * PANEL..][..valid]
                                    .copy_from_slice(&c[row * width + start..][..valid]);
                            }
                        }
                    }
                    let base = sums.0.as_mut_ptr();
                    let tile = TILE_ROWS * PANEL;
                    // SAFETY: the four sum tiles are read from and written to `sums` (4,096 bytes);
                    // each of the `steps` steps reads 16 rows × 64 bytes of the left operand from
                    // rows r0..r0 + 32 (inside the padded `a.data`), input pairs k0.. of the chunk,
                    // at a stride of one row, and 1,024 bytes of each weight panel (inside `w.data`:
                    // the chunk's `steps` × 1,024 bytes from pair k0 lie inside the panel's
                    // `pairs` × 64 bytes).
                    unsafe {
                        block(
                            [
                                base,
                                base.wrapping_add(tile),
                                base.wrapping_add(2 * tile),
                                base.wrapping_add(3 * tile),
                            ],
                            PANEL * 4,
                            [a0, a1],
                            pairs * 4,
                            [b0, b1],
                            steps,
                        )
                    };
                    for half in 0..2 {
                        for q in 0..1 + usize::from(second) {
                            let (tile, start, valid, rows) = edge(half, q);
                            for r in 0..rows {
                                let row = r0 + half * TILE_ROWS + r;
                                c[row * width + start..][..valid].copy_from_slice(
                                    &sums.0[(tile * TILE_ROWS + r) * PANEL..][..valid],
                                );
                            }
                        }
                    }
                }
            }
        }
        // SAFETY: ends the tile use begun above; touches no memory.
        unsafe { asm!("tilerelease", options(nostack, nomem)) };
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

    /// `out[i]` = the bf16 pair `(a[2i], a[2i + 1])`, rounded as [`super::round`] does, 32
    /// values at a time (`a.len()` a multiple of 32, `out` half as long).
    ///
    /// # Safety
    /// AVX-512 F and BF16 must be present.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub unsafe fn round_rows(a: &[f32], out: &mut [u32]) {
        assert!(a.len().is_multiple_of(32) && out.len() * 2 == a.len());
        for (x, o) in a.chunks_exact(32).zip(out.chunks_exact_mut(16)) {
            // SAFETY: 32 f32 in `x` and 16 u32 in `o`, unaligned loads and stores.
            unsafe {
                let low = _mm512_loadu_ps(x.as_ptr());
                let high = _mm512_loadu_ps(x.as_ptr().add(16));
                // The second operand fills the low half: values 0..16, then 16..32.
                let both = _mm512_cvtne2ps_pbh(high, low);
                _mm512_storeu_si512(
                    o.as_mut_ptr().cast(),
                    std::mem::transmute::<__m512bh, __m512i>(both),
                );
            }
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

    /// The vector rounding of the activations is `round`'s, value for value (normal values,
    /// ties, infinities and NaN; denormals are flushed by the instruction and do not occur in
    /// activations that matter).
    #[test]
    fn activations_round_as_round_does() {
        let mut a: Vec<f32> = (0..3 * 64)
            .map(|i| ((i * 7919 % 1013) as f32 - 500.0) * 0.37)
            .collect();
        a[1] = f32::from_bits(0x3f80_8000);
        a[2] = f32::from_bits(0x3f81_8000);
        a[3] = f32::INFINITY;
        a[4] = f32::NEG_INFINITY;
        a[5] = f32::NAN;
        let packed = PackedRows::pack(&a, 3, 64);
        for (i, pair) in packed.data[..3 * 32].iter().enumerate() {
            let (low, high) = (*pair as u16, (*pair >> 16) as u16);
            for (got, x) in [(low, a[2 * i]), (high, a[2 * i + 1])] {
                if x.is_nan() {
                    assert!(f32::from_bits(u32::from(got) << 16).is_nan());
                } else {
                    assert_eq!(got, round(x), "{x}");
                }
            }
        }
        assert!(
            packed.data[3 * 32..].iter().all(|&p| p == 0),
            "padding rows are zero"
        );
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
            (33, 80, 32, 16..80),
            (70, 48, 64, 0..48),
            (1, 384, 384, 192..384),
            (40, 64, 1536, 0..64),
            (70, 48, 416, 16..48),
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
            for kernel in kernels(inputs) {
                let mut c = vec![1.0; rows * width];
                gemm_nt_with(kernel, &left, &packed, band.clone(), &mut c);
                for i in 0..rows {
                    for (j, o) in band.clone().enumerate() {
                        let (got, want) = (c[i * width + j] - 1.0, want[i * outputs + o]);
                        assert!(
                        (got - want).abs() <= 1e-3 * (1.0 + want.abs()),
                        "{kernel:?} {rows}x{outputs}x{inputs} {band:?}: c[{i}][{o}] = {got}, want {want}"
                    );
                    }
                }
            }
        }
    }

    /// The kernels this machine runs for products of `inputs` inputs (every one it has).
    fn kernels(inputs: usize) -> Vec<Kernel> {
        let mut kernels = vec![Kernel::Vectors];
        if tiles_available() && inputs.div_ceil(2).is_multiple_of(TILE_PAIRS) {
            kernels.push(Kernel::Tiles);
        } else if inputs == 1536 {
            eprintln!("no AMX here: the tile kernel is not tested on this machine");
        }
        kernels
    }

    /// A row's products do not depend on the rows beside it (the vector cache relies on it).
    #[test]
    fn a_row_does_not_depend_on_its_batch_mates() {
        if !available() {
            return;
        }
        for kernel in kernels(64) {
            row_alone_and_in_a_batch(kernel);
        }
    }

    fn row_alone_and_in_a_batch(kernel: Kernel) {
        let (outputs, inputs) = (48, 64);
        let w: Vec<f32> = (0..outputs * inputs).map(|i| (i as f32).sin()).collect();
        let packed = PackedWeight::pack(&w, outputs, inputs);
        // 70 rows: whole blocks of the tile kernel, and an edge; a bias in `c` as in a layer.
        let a: Vec<f32> = (0..70 * inputs).map(|i| (i as f32 * 0.37).cos()).collect();
        let mut all = vec![0.3; 70 * outputs];
        gemm_nt_with(
            kernel,
            &PackedRows::pack(&a, 70, inputs),
            &packed,
            0..outputs,
            &mut all,
        );
        let row5 = &a[5 * inputs..6 * inputs];
        let mut alone = vec![0.3; outputs];
        gemm_nt_with(
            kernel,
            &PackedRows::pack(row5, 1, inputs),
            &packed,
            0..outputs,
            &mut alone,
        );
        assert_eq!(&all[5 * outputs..6 * outputs], &alone[..], "{kernel:?}");
    }
}
