//! Linear layers in 16-bit integers, on CPUs with AVX512-VNNI.
//!
//! Why: `vpdpwssd` does 32 multiply-adds of 16-bit integers per instruction into 32-bit sums, at the
//! same issue rate as a 16-lane f32 FMA, so twice its arithmetic (measured on this project's Xeon:
//! 167 against 88 G multiply-adds/s per core). A corpus is embedded in batches, where the linear
//! layers are most of the time and run at the f32 FMA peak, so this is the only way left to embed
//! it faster without embedding fewer tokens.
//!
//! How exact: integer sums run over blocks of `BLOCK` inputs and are added into f32 accumulators
//! after each block, so each weight column and each activation row can be scaled to the largest
//! magnitude that keeps a block's worst-case sum inside i32 (`magnitude`: 4,095 levels each side,
//! whatever k is; one i32 sum over all of k = 1,536 would allow only 1,182). The integer products
//! are exact and the only error is rounding each input to its grid, about 0.01% of a row's
//! largest value. Queries use it too (their few rows split the panels between the cores): a
//! query's embedding measured about 20% faster than with the f16 kernel, same retrieval quality.
//! Vectors stay within 1e-3 per component of candle's f32 `BertModel` (measured 4.5e-4; tested
//! with the real model in tests/reference_cosine.rs).

use std::arch::x86_64::*;
use std::cell::RefCell;

use rayon::prelude::*;

use crate::packed::{SendPtr, NR};

/// Rows per register tile: 12 accumulators + 1 weight register of 32.
const MR: usize = 12;
/// Rows per task: their quantised inputs stay in L2 (48 x 1536 x 2 B).
const ROW_CHUNK: usize = 48;
/// Inputs per integer sum before it is added into f32: short enough for a 12-bit grid on both
/// sides, long enough that the conversion (one per 64 `vpdpwssd`) costs little.
const BLOCK: usize = 128;

/// Whether this CPU has the instructions (checked once; std caches CPUID), unless
/// `SCANAID_MATMUL_KERNEL` names another kernel (`avx2` or `avx512`: f32, to compare on one
/// machine in one run).
pub(crate) fn available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        let forced_f32 = std::env::var("SCANAID_MATMUL_KERNEL").is_ok_and(|v| v != "int16");
        !forced_f32
            && is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vnni")
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
/// 16 columns x 2 inputs, the order `vpdpwssd` multiplies in.
pub(crate) struct PackedI16 {
    n: usize,
    /// Inputs per row of x.
    k_in: usize,
    /// k rounded up to even (the last input of an odd k pairs with a zero).
    k: usize,
    data: Vec<i16>,
    /// Per column: the factor that turns its integer weights back into the real ones.
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

/// out (m x n, row-major) = x (m x `w.k_in`, row-major) times the packed weights, plus `bias`.
/// Splits the rows between threads in chunks.
///
/// The caller must have checked `available()`.
pub(crate) fn linear(x: &[f32], m: usize, w: &PackedI16, bias: &[f32], out: &mut [f32]) {
    assert!(available(), "the int16 kernel needs AVX512-VNNI");
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
        // SAFETY: `available()` was checked; the task writes only its own rows of `out`.
        unsafe {
            quantise_rows(
                &x[start * k_in..(start + rows) * k_in],
                rows,
                k_in,
                w.k,
                &mut buffer,
                &mut row_scale,
            );
            let q = &buffer[..];
            let scales = &row_scale[..rows];
            let dst = SendPtr(ptr.get().add(start * w.n));
            let panels = w.n.div_ceil(NR);
            if chunks == 1 && panels > 1 && rayon::current_num_threads() > 1 {
                // Few rows (a query): the panels are split between the cores instead,
                // since one chunk of rows would leave the other core idle.
                let half = panels / 2;
                // SAFETY: the halves write the disjoint column ranges of their panels.
                rayon::join(
                    || run_rows(q, scales, w, 0..half, bias, dst.get()),
                    || run_rows(q, scales, w, half..panels, bias, dst.get()),
                );
            } else {
                run_rows(q, scales, w, 0..panels, bias, dst.get());
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

/// Scales each row of x (rows x k_in) to `magnitude(kp)` and rounds it into `q` (rows x kp,
/// zero-padded), recording the factor that turns each row back.
///
/// # Safety
/// The CPU must have AVX-512F and AVX-512BW.
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn quantise_rows(
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
            largest = _mm512_max_ps(largest, _mm512_abs_ps(_mm512_loadu_ps(row.as_ptr().add(c))));
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
        for c in whole..k_in {
            dst[c] = (row[c] * to_int).round() as i16;
        }
        dst[k_in..].iter_mut().for_each(|v| *v = 0);
    }
}

/// The quantised rows (rows x w.k) times the given panels, scaled back, plus bias, into those
/// panels' columns of `dst` (rows x w.n, row-major).
///
/// # Safety
/// The CPU must have AVX512-VNNI; `dst` must be valid for rows x w.n values.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn run_rows(
    q: &[i16],
    row_scale: &[f32],
    w: &PackedI16,
    panels: std::ops::Range<usize>,
    bias: &[f32],
    dst: *mut f32,
) {
    let rows = row_scale.len();
    let (n, kp) = (w.n, w.k);
    for panel in panels {
        let col0 = panel * NR;
        let cols = NR.min(n - col0);
        let mask: __mmask16 = if cols == NR { !0 } else { (1u16 << cols) - 1 };
        let panel_bias = _mm512_maskz_loadu_ps(mask, bias.as_ptr().add(col0));
        let column_scale = _mm512_loadu_ps(w.column_scale.as_ptr().add(col0));
        let weights = w.panel(panel);
        let mut row = 0;
        while row < rows {
            let m = MR.min(rows - row);
            let tile_q = &q[row * kp..(row + m) * kp];
            let scales = &row_scale[row..row + m];
            let out = dst.add(row * n + col0);
            macro_rules! tiles {
                ($($m:literal)*) => {
                    match m {
                        $($m => tile::<$m>(tile_q, kp, weights, scales, column_scale, panel_bias, mask, out, n),)*
                        _ => tile::<1>(tile_q, kp, weights, scales, column_scale, panel_bias, mask, out, n),
                    }
                };
            }
            tiles!(12 11 10 9 8 7 6 5 4 3 2);
            row += m;
        }
    }
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
                let xv =
                    _mm512_set1_epi32((qp.add(i * kp + pair * 2) as *const i32).read_unaligned());
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

/// acc + the pairwise products of a and b, by one `vpdpwssd`. Written in assembly because LLVM,
/// tuning for generic x86-64, splits the intrinsic into `vpmaddwd` + `vpaddd`: two instructions
/// on the same two ports, which halved this kernel's rate (seen in `perf annotate`).
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Against the f64 definition, relative to the size of the terms summed: every tile height, a
    /// partial panel, an odd k, a zero row, several chunks.
    #[test]
    fn int16_linear_matches_the_definition() {
        if !available() {
            eprintln!("no AVX512-VNNI here: the int16 kernel is not used on this CPU");
            return;
        }
        for (m, k, n) in [
            (1, 8, 16),
            (5, 25, 20),
            (13, 384, 33),
            (100, 64, 50),
            (200, 1536, 40),
        ] {
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
            let mut out = vec![f32::NAN; m * n];
            linear(&x, m, &PackedI16::pack(&w, n, k), &bias, &mut out);
            for i in 0..m {
                for j in 0..n {
                    let terms = (0..k).map(|p| (x[i * k + p] as f64, w[j * k + p] as f64));
                    let want: f64 = terms.clone().map(|(a, b)| a * b).sum::<f64>() + bias[j] as f64;
                    let size: f64 = terms.map(|(a, b)| (a * b).abs()).sum::<f64>();
                    let got = out[i * n + j] as f64;
                    assert!(
                        (got - want).abs() <= 5e-4 * size + 1e-6,
                        "m={m} k={k} n={n} [{i},{j}]: {got} vs {want} (terms sum to {size})"
                    );
                }
            }
        }
    }

    /// Many calls at once from rayon tasks, each splitting its panels with a join, give the same
    /// outputs as the calls one at a time. (A waiting join may run another task's call on the
    /// same thread; the buffer is taken out of the thread-local for that. Three runs of this test
    /// against the borrowing version did not happen to hit that interleaving.)
    #[test]
    fn calls_from_rayon_tasks_do_not_share_a_buffer() {
        if !available() {
            return;
        }
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
        let alone: Vec<Vec<f32>> = (0..256)
            .map(|t| {
                let mut out = vec![0f32; m * n];
                linear(&input(t), m, &packed, &bias, &mut out);
                out
            })
            .collect();
        let from_tasks: Vec<Vec<f32>> = (0..256)
            .into_par_iter()
            .map(|t| {
                let mut out = vec![0f32; m * n];
                linear(&input(t), m, &packed, &bias, &mut out);
                out
            })
            .collect();
        assert_eq!(alone, from_tasks);
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
