//! Linear layers in 16-bit integers: `vpdpwssd` where the CPU has AVX512-VNNI, `vpmaddwd` +
//! `vpaddd` on AVX2 elsewhere.
//!
//! Why: a corpus is embedded in batches, where the linear layers are most of the time and run at
//! the f32 FMA peak, so integer arithmetic is the only way left to embed it faster without
//! embedding fewer tokens. `vpdpwssd` does 32 multiply-adds of 16-bit integers per instruction at
//! the issue rate of a 16-lane f32 FMA (measured on this project's Xeon: 167 against 88 G
//! multiply-adds/s per core). AVX2 has no fused form, but `vpmaddwd` (16 multiply-adds) and
//! `vpaddd` issue on more ports than the FMA: on the project's AMD EPYC (Zen 3) a register-only
//! loop reached 74-79 G multiply-adds/s per core against 50 for `vfmadd231ps`.
//!
//! How exact: integer sums run over blocks of `BLOCK` inputs and are added into f32 accumulators
//! after each block, so each weight column and each activation row can be scaled to the largest
//! magnitude that keeps a block's worst-case sum inside i32 (`magnitude`: 4,095 levels each side,
//! whatever k is; one i32 sum over all of k = 1,536 would allow only 1,182). The integer products
//! are exact and the only error is rounding each input to its grid, about 0.01% of a row's
//! largest value. Both kernels quantise alike and add the same blocks in the same order, so their
//! outputs are bit-identical (tested where both run). Queries use it too (their few rows split the
//! panels between the cores): on the Xeon a query's embedding measured about 20% faster than with
//! the f16 kernel, same retrieval quality. Vectors stay within 1e-3 per component of candle's f32
//! `BertModel` (measured 4.5e-4; tested with the real model in tests/reference_cosine.rs).

// The tiles' row number addresses the registers and the memory rows at once; index loops say
// that more plainly than zipped iterators.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;
use std::cell::RefCell;

use rayon::prelude::*;

use crate::packed::{SendPtr, NR};

/// Rows per task: their quantised inputs stay in L2 (48 x 1536 x 2 B).
const ROW_CHUNK: usize = 48;
/// Inputs per integer sum before it is added into f32: short enough for a 12-bit grid on both
/// sides, long enough that the conversion (one per 64 multiply-add steps) costs little.
const BLOCK: usize = 128;

/// The instructions an int16 call runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kernel {
    /// 12 rows x 16 columns, `vpdpwssd` into AVX-512 registers.
    Vnni,
    /// 6 rows x 16 columns, `vpmaddwd` + `vpaddd` into AVX2 registers.
    Avx2,
}

impl Kernel {
    /// Whether this CPU runs it.
    pub(crate) fn runs_here(self) -> bool {
        match self {
            Kernel::Vnni => {
                is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
                    && is_x86_feature_detected!("avx512vnni")
            }
            Kernel::Avx2 => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Kernel::Vnni => "int16 (AVX512-VNNI)",
            Kernel::Avx2 => "int16 (AVX2)",
        }
    }
}

/// The int16 kernel the linear layers use on this CPU (checked once): VNNI where it exists, else
/// none (f32 on f16 weights). `SCANAID_MATMUL_KERNEL` picks another to compare on one machine in
/// one run: `avx2` or `avx512` (f32 on f16 weights), `int16` (VNNI, else the AVX2 int16 kernel),
/// `int16-avx2`.
///
/// Why not the AVX2 int16 kernel by default: on the AMD EPYC (Zen 3) it measured no faster than
/// the f16 one (`scanaid bench embed`, four alternating runs: ~128 tokens 32.1 / 32.5 against
/// 31.7 / 33.3 passages/s, ~256 tokens 13.2 / 14.7 against 16.2 / 15.8), though a register-only
/// loop of `vpmaddwd` + `vpaddd` did 1.5x the multiply-adds of `vfmadd231ps`. It stays as the
/// int16 arithmetic that every x86-64-v3 machine can test (CI's included): the same packing,
/// grids and blocks as the VNNI kernel, with bit-identical outputs.
pub(crate) fn kernel() -> Option<Kernel> {
    static CHOSEN: std::sync::OnceLock<Option<Kernel>> = std::sync::OnceLock::new();
    *CHOSEN.get_or_init(|| {
        let asked = std::env::var("SCANAID_MATMUL_KERNEL").unwrap_or_default();
        let candidates: &[Kernel] = match asked.as_str() {
            "avx2" | "avx512" => &[],
            "int16-avx2" => &[Kernel::Avx2],
            "int16" => &[Kernel::Vnni, Kernel::Avx2],
            _ => &[Kernel::Vnni],
        };
        candidates.iter().copied().find(|k| k.runs_here())
    })
}

/// The largest integer magnitude for inputs and weights such that one block's dot product cannot
/// leave i32: min(k, BLOCK) x m x m < 2^31.
fn magnitude(k_padded: usize) -> f32 {
    let terms = k_padded.clamp(1, BLOCK) as f64;
    (((i32::MAX as f64) / terms).sqrt().floor()).min(i16::MAX as f64) as f32
}

/// The factors onto and off a grid of `magnitude` levels for values whose largest magnitude is
/// `largest`. A zero (or not finite) largest value maps everything to zero.
fn grid(largest: f32, magnitude: f32) -> (f32, f32) {
    if largest > 0.0 && largest.is_finite() {
        (magnitude / largest, largest / magnitude)
    } else {
        (0.0, 0.0)
    }
}

/// A weight matrix (n outputs x k inputs) as ceil(n / 16) panels of 16 columns, each column
/// scaled to `magnitude` by its own factor. Inside a panel, inputs come in pairs: for each pair,
/// 16 columns x 2 inputs, the order `vpdpwssd` and `vpmaddwd` multiply in (the AVX2 kernel
/// reads a pair's 16 columns as two halves of 8).
pub(crate) struct PackedI16 {
    n: usize,
    /// Inputs per row of x.
    k_in: usize,
    /// k rounded up to even (the last input of an odd k pairs with a zero).
    k: usize,
    data: Vec<i16>,
    /// Per column (padded to whole panels with zeros): the factor that turns its integer weights
    /// back into the real ones.
    column_scale: Vec<f32>,
}

impl PackedI16 {
    /// Packs `w`, stored (n, k) row-major as in the checkpoint.
    pub(crate) fn pack(w: &[f32], n: usize, k: usize) -> Self {
        assert_eq!(w.len(), n * k, "weights are n x k");
        let kp = k.next_multiple_of(2);
        let m = magnitude(kp);
        let panels = n.div_ceil(NR);
        let mut data = vec![0i16; panels * kp * NR];
        let mut column_scale = vec![0f32; panels * NR];
        for j in 0..n {
            let column = &w[j * k..(j + 1) * k];
            let (to_int, scale) = grid(column.iter().fold(0f32, |a, v| a.max(v.abs())), m);
            column_scale[j] = scale;
            let (panel, col) = (j / NR, j % NR);
            for (p, &v) in column.iter().enumerate() {
                let at = panel * kp * NR + (p / 2) * 2 * NR + col * 2 + p % 2;
                data[at] = (v * to_int).round() as i16;
            }
        }
        Self {
            n,
            k_in: k,
            k: kp,
            data,
            column_scale,
        }
    }

    fn panel(&self, index: usize) -> &[i16] {
        &self.data[index * self.k * NR..(index + 1) * self.k * NR]
    }
}

thread_local! {
    /// A task's quantised rows, kept between calls (allocating them per call page-faults); a call
    /// takes the buffer and puts it back, so no borrow is held while it runs.
    static QUANTISED: RefCell<Vec<i16>> = const { RefCell::new(Vec::new()) };
}

/// out (m x n, row-major) = x (m x `w.k_in`, row-major) times the packed weights, plus `bias`,
/// on this CPU's int16 kernel. The caller must have checked that `kernel()` is Some.
pub(crate) fn linear(x: &[f32], m: usize, w: &PackedI16, bias: &[f32], out: &mut [f32]) {
    let kernel = kernel().expect("the int16 kernels need AVX2 or AVX512-VNNI");
    linear_on(kernel, x, m, w, bias, out);
}

/// `linear` on a chosen kernel (tests run both where both exist). Splits the rows between threads
/// in chunks.
pub(crate) fn linear_on(
    kernel: Kernel,
    x: &[f32],
    m: usize,
    w: &PackedI16,
    bias: &[f32],
    out: &mut [f32],
) {
    assert!(
        kernel.runs_here(),
        "{} does not run on this CPU",
        kernel.name()
    );
    let k_in = w.k_in;
    assert!(x.len() >= m * k_in);
    assert!(out.len() >= m * w.n && bias.len() == w.n);
    let ptr = SendPtr(out.as_mut_ptr());
    let chunks = m.div_ceil(ROW_CHUNK);
    let run = |c: usize| {
        let start = c * ROW_CHUNK;
        let rows = ROW_CHUNK.min(m - start);
        // Taken out of the thread-local rather than borrowed in place: the join below may run
        // other rayon work on this thread while it waits, and that work may come back here.
        let mut buffer = QUANTISED.with(|kept| std::mem::take(&mut *kept.borrow_mut()));
        buffer.resize(rows * w.k, 0);
        let mut row_scale = [0f32; ROW_CHUNK];
        let x_rows = &x[start * k_in..(start + rows) * k_in];
        // SAFETY: `runs_here()` was checked; the task writes only its own rows of `out`.
        unsafe {
            match kernel {
                Kernel::Vnni => {
                    avx512::quantise_rows(x_rows, rows, k_in, w.k, &mut buffer, &mut row_scale)
                }
                Kernel::Avx2 => {
                    avx2::quantise_rows(x_rows, rows, k_in, w.k, &mut buffer, &mut row_scale)
                }
            }
            let q = &buffer[..];
            let scales = &row_scale[..rows];
            let dst = SendPtr(ptr.get().add(start * w.n));
            let run_panels = |panels: std::ops::Range<usize>| match kernel {
                Kernel::Vnni => avx512::run_rows(q, scales, w, panels, bias, dst.get()),
                Kernel::Avx2 => avx2::run_rows(q, scales, w, panels, bias, dst.get()),
            };
            let panels = w.n.div_ceil(NR);
            if chunks == 1 && panels > 1 && rayon::current_num_threads() > 1 {
                // Few rows (a query): the panels are split between the cores instead,
                // since one chunk of rows would leave the other core idle.
                let half = panels / 2;
                // SAFETY: the halves write the disjoint column ranges of their panels.
                rayon::join(|| run_panels(0..half), || run_panels(half..panels));
            } else {
                run_panels(0..panels);
            }
        }
        QUANTISED.with(|kept| *kept.borrow_mut() = buffer);
    };
    if chunks == 1 {
        run(0);
    } else {
        (0..chunks).into_par_iter().for_each(run);
    }
}

/// The inputs that do not fill a whole vector of 16, rounded one by one (both kernels do this
/// alike, so they quantise identically), and the zero padding up to kp.
fn quantise_tail(row: &[f32], whole: usize, to_int: f32, dst: &mut [i16]) {
    for (d, &v) in dst[whole..row.len()].iter_mut().zip(&row[whole..]) {
        *d = (v * to_int).round() as i16;
    }
    dst[row.len()..].iter_mut().for_each(|v| *v = 0);
}

/// One register tile's share of a `run_rows` call: `rows` quantised rows times one panel.
struct TileAt<'a> {
    rows: usize,
    q: &'a [i16],
    row_scale: &'a [f32],
    /// The panel's first column, and how many of its 16 columns are real.
    col0: usize,
    cols: usize,
    weights: &'a [i16],
    /// Where the tile's first row and column go in `dst` (row stride `w.n`).
    out: *mut f32,
}

/// The walk both kernels' `run_rows` share: panel by panel, then the rows in tiles of at most `mr`.
/// `#[inline(always)]` so each kernel's tile closure is compiled inside its own
/// `#[target_feature]` function, as `packed::for_each_tile` is.
///
/// # Safety
/// `dst` must be valid for `row_scale.len()` x `w.n` values; `tile` must write only its tile.
#[inline(always)]
unsafe fn for_each_tile(
    mr: usize,
    q: &[i16],
    row_scale: &[f32],
    w: &PackedI16,
    panels: std::ops::Range<usize>,
    dst: *mut f32,
    mut tile: impl FnMut(TileAt<'_>),
) {
    let rows = row_scale.len();
    let (n, kp) = (w.n, w.k);
    for panel in panels {
        let col0 = panel * NR;
        let weights = w.panel(panel);
        let mut row = 0;
        while row < rows {
            let m = mr.min(rows - row);
            tile(TileAt {
                rows: m,
                q: &q[row * kp..(row + m) * kp],
                row_scale: &row_scale[row..row + m],
                col0,
                cols: NR.min(n - col0),
                weights,
                out: dst.add(row * n + col0),
            });
            row += m;
        }
    }
}

mod avx512 {
    use super::*;

    /// Rows per register tile: 12 accumulators + 1 weight register of 32.
    const MR: usize = 12;

    /// Scales each row of x (rows x k_in) to `magnitude(kp)` and rounds it into `q` (rows x kp,
    /// zero-padded), recording the factor that turns each row back.
    ///
    /// # Safety
    /// The CPU must have AVX-512F and AVX-512BW.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) unsafe fn quantise_rows(
        x: &[f32],
        rows: usize,
        k_in: usize,
        kp: usize,
        q: &mut [i16],
        row_scale: &mut [f32],
    ) {
        let m = magnitude(kp);
        for r in 0..rows {
            let row = &x[r * k_in..(r + 1) * k_in];
            let dst = &mut q[r * kp..(r + 1) * kp];
            let mut largest = _mm512_setzero_ps();
            let whole = k_in / 16 * 16;
            for c in (0..whole).step_by(16) {
                largest =
                    _mm512_max_ps(largest, _mm512_abs_ps(_mm512_loadu_ps(row.as_ptr().add(c))));
            }
            let mut largest = _mm512_reduce_max_ps(largest);
            for &v in &row[whole..] {
                largest = largest.max(v.abs());
            }
            let (to_int, scale) = grid(largest, m);
            row_scale[r] = scale;
            let factor = _mm512_set1_ps(to_int);
            for c in (0..whole).step_by(16) {
                // Round to nearest, then narrow 16 i32 to 16 i16 (values are within +-magnitude).
                let ints =
                    _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(row.as_ptr().add(c)), factor));
                _mm256_storeu_si256(
                    dst.as_mut_ptr().add(c) as *mut __m256i,
                    _mm512_cvtepi32_epi16(ints),
                );
            }
            quantise_tail(row, whole, to_int, dst);
        }
    }

    /// The quantised rows (rows x w.k) times the given panels, scaled back, plus bias, into those
    /// panels' columns of `dst` (rows x w.n, row-major).
    ///
    /// # Safety
    /// The CPU must have AVX512-VNNI; `dst` must be valid for rows x w.n values.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub(super) unsafe fn run_rows(
        q: &[i16],
        row_scale: &[f32],
        w: &PackedI16,
        panels: std::ops::Range<usize>,
        bias: &[f32],
        dst: *mut f32,
    ) {
        let (n, kp) = (w.n, w.k);
        for_each_tile(MR, q, row_scale, w, panels, dst, |t| {
            let mask: __mmask16 = if t.cols == NR {
                !0
            } else {
                (1u16 << t.cols) - 1
            };
            let panel_bias = _mm512_maskz_loadu_ps(mask, bias.as_ptr().add(t.col0));
            let column_scale = _mm512_loadu_ps(w.column_scale.as_ptr().add(t.col0));
            let (tile_q, weights, scales, out) = (t.q, t.weights, t.row_scale, t.out);
            macro_rules! tiles {
                ($($m:literal)*) => {
                    match t.rows {
                        $($m => tile::<$m>(tile_q, kp, weights, scales, column_scale, panel_bias, mask, out, n),)*
                        _ => tile::<1>(tile_q, kp, weights, scales, column_scale, panel_bias, mask, out, n),
                    }
                };
            }
            tiles!(12 11 10 9 8 7 6 5 4 3 2);
        });
    }

    /// M quantised rows times one panel: integer sums, then scaled by row and column and biased.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    #[inline]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile<const M: usize>(
        q: &[i16],
        kp: usize,
        panel: &[i16],
        row_scale: &[f32],
        column_scale: __m512,
        bias: __m512,
        mask: __mmask16,
        dst: *mut f32,
        ldo: usize,
    ) {
        debug_assert!(q.len() >= M * kp && panel.len() >= kp * NR && row_scale.len() >= M);
        let mut sums = [_mm512_setzero_ps(); M];
        let qp = q.as_ptr();
        let wp = panel.as_ptr();
        let pairs = kp / 2;
        let mut start = 0;
        while start < pairs {
            let end = (start + BLOCK / 2).min(pairs);
            let mut acc = [_mm512_setzero_si512(); M];
            for pair in start..end {
                let wv = _mm512_loadu_si512(wp.add(pair * 2 * NR) as *const __m512i);
                for i in 0..M {
                    let xv = _mm512_set1_epi32(
                        (qp.add(i * kp + pair * 2) as *const i32).read_unaligned(),
                    );
                    acc[i] = dpwssd(acc[i], xv, wv);
                }
            }
            // Exact below 2^24 and within 6e-8 relative above: far under the grid's rounding.
            for i in 0..M {
                sums[i] = _mm512_add_ps(sums[i], _mm512_cvtepi32_ps(acc[i]));
            }
            start = end;
        }
        for (i, sum) in sums.iter().enumerate() {
            let scale = _mm512_mul_ps(_mm512_set1_ps(row_scale[i]), column_scale);
            let v = _mm512_fmadd_ps(*sum, scale, bias);
            _mm512_mask_storeu_ps(dst.add(i * ldo), mask, v);
        }
    }

    /// acc + the pairwise products of a and b, by one `vpdpwssd`. Written in assembly because
    /// LLVM, tuning for generic x86-64, splits the intrinsic into `vpmaddwd` + `vpaddd`: two
    /// instructions on the same two ports, which halved this kernel's rate (seen in `perf
    /// annotate`).
    #[target_feature(enable = "avx512f,avx512vnni")]
    #[inline]
    unsafe fn dpwssd(acc: __m512i, a: __m512i, b: __m512i) -> __m512i {
        let mut acc = acc;
        std::arch::asm!(
            "vpdpwssd {acc}, {a}, {b}",
            acc = inout(zmm_reg) acc,
            a = in(zmm_reg) a,
            b = in(zmm_reg) b,
            options(pure, nomem, nostack, preserves_flags),
        );
        acc
    }
}

mod avx2 {
    use super::*;

    /// Rows per register tile: 12 accumulators (two per row), two weight registers, one
    /// broadcast input and one product fill the 16 AVX2 registers.
    const MR: usize = 6;
    /// Half a panel: the columns in one AVX2 register.
    const HALF: usize = NR / 2;

    /// Scales each row of x (rows x k_in) to `magnitude(kp)` and rounds it into `q` (rows x kp,
    /// zero-padded), recording the factor that turns each row back: the same values as the
    /// AVX-512 version (same maximum, same round-to-nearest-even conversion, same tail).
    ///
    /// # Safety
    /// The CPU must have AVX2.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn quantise_rows(
        x: &[f32],
        rows: usize,
        k_in: usize,
        kp: usize,
        q: &mut [i16],
        row_scale: &mut [f32],
    ) {
        let m = magnitude(kp);
        let sign = _mm256_set1_ps(-0.0);
        for r in 0..rows {
            let row = &x[r * k_in..(r + 1) * k_in];
            let dst = &mut q[r * kp..(r + 1) * kp];
            let whole = k_in / 16 * 16;
            let mut largest = _mm256_setzero_ps();
            for c in (0..whole).step_by(8) {
                let v = _mm256_loadu_ps(row.as_ptr().add(c));
                largest = _mm256_max_ps(largest, _mm256_andnot_ps(sign, v));
            }
            let mut lanes = [0f32; 8];
            _mm256_storeu_ps(lanes.as_mut_ptr(), largest);
            let mut largest = lanes.iter().fold(0f32, |a, &v| a.max(v));
            for &v in &row[whole..] {
                largest = largest.max(v.abs());
            }
            let (to_int, scale) = grid(largest, m);
            row_scale[r] = scale;
            let factor = _mm256_set1_ps(to_int);
            for c in (0..whole).step_by(16) {
                let low =
                    _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(row.as_ptr().add(c)), factor));
                let high = _mm256_cvtps_epi32(_mm256_mul_ps(
                    _mm256_loadu_ps(row.as_ptr().add(c + 8)),
                    factor,
                ));
                // packs works within 128-bit lanes (low 0-3, high 0-3, low 4-7, high 4-7);
                // the permute puts the four groups back in order.
                let packed = _mm256_permute4x64_epi64(_mm256_packs_epi32(low, high), 0b11_01_10_00);
                _mm256_storeu_si256(dst.as_mut_ptr().add(c) as *mut __m256i, packed);
            }
            quantise_tail(row, whole, to_int, dst);
        }
    }

    /// The quantised rows (rows x w.k) times the given panels, scaled back, plus bias, into those
    /// panels' columns of `dst` (rows x w.n, row-major).
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA; `dst` must be valid for rows x w.n values.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn run_rows(
        q: &[i16],
        row_scale: &[f32],
        w: &PackedI16,
        panels: std::ops::Range<usize>,
        bias: &[f32],
        dst: *mut f32,
    ) {
        let (n, kp) = (w.n, w.k);
        for_each_tile(MR, q, row_scale, w, panels, dst, |t| {
            let cols = t.cols;
            let mut panel_bias = [0f32; NR];
            panel_bias[..cols].copy_from_slice(&bias[t.col0..t.col0 + cols]);
            let column_scale = &w.column_scale[t.col0..t.col0 + NR];
            let (tile_q, weights, scales, out) = (t.q, t.weights, t.row_scale, t.out);
            macro_rules! tiles {
                ($($m:literal)*) => {
                    match t.rows {
                        $($m => tile::<$m>(tile_q, kp, weights, scales, column_scale, &panel_bias, cols, out, n),)*
                        _ => tile::<1>(tile_q, kp, weights, scales, column_scale, &panel_bias, cols, out, n),
                    }
                };
            }
            tiles!(6 5 4 3 2);
        });
    }

    /// M quantised rows times one panel: integer sums, then scaled by row and column and biased;
    /// `cols` of the panel's 16 columns are stored.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile<const M: usize>(
        q: &[i16],
        kp: usize,
        panel: &[i16],
        row_scale: &[f32],
        column_scale: &[f32],
        bias: &[f32; NR],
        cols: usize,
        dst: *mut f32,
        ldo: usize,
    ) {
        debug_assert!(q.len() >= M * kp && panel.len() >= kp * NR && row_scale.len() >= M);
        let mut sums = [[_mm256_setzero_ps(); 2]; M];
        let qp = q.as_ptr();
        let wp = panel.as_ptr();
        let pairs = kp / 2;
        let mut start = 0;
        while start < pairs {
            let end = (start + BLOCK / 2).min(pairs);
            let mut acc = [[_mm256_setzero_si256(); 2]; M];
            for pair in start..end {
                let w_low = _mm256_loadu_si256(wp.add(pair * 2 * NR) as *const __m256i);
                let w_high = _mm256_loadu_si256(wp.add(pair * 2 * NR + NR) as *const __m256i);
                for i in 0..M {
                    let xv = _mm256_set1_epi32(
                        (qp.add(i * kp + pair * 2) as *const i32).read_unaligned(),
                    );
                    acc[i][0] = _mm256_add_epi32(acc[i][0], _mm256_madd_epi16(xv, w_low));
                    acc[i][1] = _mm256_add_epi32(acc[i][1], _mm256_madd_epi16(xv, w_high));
                }
            }
            // The same conversion and f32 additions, block by block, as the VNNI kernel.
            for i in 0..M {
                for h in 0..2 {
                    sums[i][h] = _mm256_add_ps(sums[i][h], _mm256_cvtepi32_ps(acc[i][h]));
                }
            }
            start = end;
        }
        for (i, sum) in sums.iter().enumerate() {
            let row = _mm256_set1_ps(row_scale[i]);
            let mut values = [0f32; NR];
            // A whole panel is stored in place; the last, partial one through `values`.
            let to = if cols == NR {
                dst.add(i * ldo)
            } else {
                values.as_mut_ptr()
            };
            for h in 0..2 {
                let scale =
                    _mm256_mul_ps(row, _mm256_loadu_ps(column_scale.as_ptr().add(h * HALF)));
                let v =
                    _mm256_fmadd_ps(sum[h], scale, _mm256_loadu_ps(bias.as_ptr().add(h * HALF)));
                _mm256_storeu_ps(to.add(h * HALF), v);
            }
            if cols < NR {
                std::ptr::copy_nonoverlapping(values.as_ptr(), dst.add(i * ldo), cols);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KERNELS: [Kernel; 2] = [Kernel::Vnni, Kernel::Avx2];

    /// The kernels this CPU runs (the AVX2 one everywhere the build runs; VNNI on the Xeons).
    fn kernels_here() -> Vec<Kernel> {
        let here: Vec<Kernel> = KERNELS.into_iter().filter(|k| k.runs_here()).collect();
        for k in KERNELS.iter().filter(|k| !here.contains(k)) {
            eprintln!("{} does not run on this CPU: not tested here", k.name());
        }
        here
    }

    /// Shapes covering every tile height of both kernels, a partial panel, an odd k, a zero
    /// row (index 3), several chunks, and k beyond one block.
    const SHAPES: [(usize, usize, usize); 6] = [
        (1, 8, 16),
        (5, 25, 20),
        (13, 384, 33),
        (100, 64, 50),
        (200, 1536, 40),
        (7, 301, 16),
    ];

    fn inputs(m: usize, k: usize, n: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let x: Vec<f32> = (0..m * k)
            .map(|i| {
                if i / k == 3 {
                    0.0
                } else {
                    ((i * 5 % 11) as f32 - 5.0) / 7.0
                }
            })
            .collect();
        let w: Vec<f32> = (0..n * k)
            .map(|i| ((i * 7 % 13) as f32 - 6.0) / 10.0)
            .collect();
        let bias: Vec<f32> = (0..n).map(|i| i as f32 / 10.0).collect();
        (x, w, bias)
    }

    /// Against the f64 definition, relative to the size of the terms summed, on each kernel.
    #[test]
    fn int16_linear_matches_the_definition() {
        for kernel in kernels_here() {
            for (m, k, n) in SHAPES {
                let (x, w, bias) = inputs(m, k, n);
                let mut out = vec![f32::NAN; m * n];
                linear_on(kernel, &x, m, &PackedI16::pack(&w, n, k), &bias, &mut out);
                for i in 0..m {
                    for j in 0..n {
                        let terms = (0..k).map(|p| (x[i * k + p] as f64, w[j * k + p] as f64));
                        let want: f64 =
                            terms.clone().map(|(a, b)| a * b).sum::<f64>() + bias[j] as f64;
                        let size: f64 = terms.map(|(a, b)| (a * b).abs()).sum::<f64>();
                        let got = out[i * n + j] as f64;
                        assert!(
                            (got - want).abs() <= 5e-4 * size + 1e-6,
                            "{kernel:?} m={m} k={k} n={n} [{i},{j}]: {got} vs {want} (terms sum to {size})"
                        );
                    }
                }
            }
        }
    }

    /// Where both kernels run, they give the same bits: the integer sums are exact and the f32
    /// steps are the same operations in the same order.
    #[test]
    fn both_kernels_give_identical_outputs() {
        if !KERNELS.iter().all(|k| k.runs_here()) {
            eprintln!("only one int16 kernel runs on this CPU: nothing to compare");
            return;
        }
        for (m, k, n) in SHAPES {
            let (x, w, bias) = inputs(m, k, n);
            let packed = PackedI16::pack(&w, n, k);
            let outputs: Vec<Vec<f32>> = KERNELS
                .iter()
                .map(|&kernel| {
                    let mut out = vec![f32::NAN; m * n];
                    linear_on(kernel, &x, m, &packed, &bias, &mut out);
                    out
                })
                .collect();
            assert_eq!(outputs[0], outputs[1], "m={m} k={k} n={n}");
        }
    }

    /// Many calls at once from rayon tasks, each splitting its panels with a join, give the same
    /// outputs as the calls one at a time. (A waiting join may run another task's call on the
    /// same thread; the buffer is taken out of the thread-local for that. Three runs of this test
    /// against the borrowing version did not happen to hit that interleaving.)
    #[test]
    fn calls_from_rayon_tasks_do_not_share_a_buffer() {
        let (m, k, n) = (5, 384, 1536);
        let w: Vec<f32> = (0..n * k)
            .map(|i| ((i * 7 % 13) as f32 - 6.0) / 10.0)
            .collect();
        let packed = PackedI16::pack(&w, n, k);
        let bias = vec![0.5f32; n];
        let input = |t: usize| -> Vec<f32> {
            (0..m * k)
                .map(|i| ((i * 5 + t) % 11) as f32 / 7.0 - 0.7)
                .collect()
        };
        for kernel in kernels_here() {
            let call = |t: usize| {
                let mut out = vec![0f32; m * n];
                linear_on(kernel, &input(t), m, &packed, &bias, &mut out);
                out
            };
            let alone: Vec<Vec<f32>> = (0..256).map(call).collect();
            let from_tasks: Vec<Vec<f32>> = (0..256).into_par_iter().map(call).collect();
            assert_eq!(alone, from_tasks, "{kernel:?}");
        }
    }

    #[test]
    fn the_worst_case_sum_fits_in_i32() {
        for k in [2usize, 100, 384, 1536, 4096] {
            let m = magnitude(k) as f64;
            let terms = k.min(BLOCK) as f64;
            assert!(terms * m * m <= i32::MAX as f64, "k={k}");
        }
        // A block of BLOCK inputs keeps a 12-bit grid on both sides.
        assert_eq!(magnitude(1536), 4095.0);
    }
}
