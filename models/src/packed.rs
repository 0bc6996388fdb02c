//! The linear layers' matmul: weights packed once, at load, into panels of 16 output columns laid
//! out input-major, and a 6 x 16 register-tiled FMA kernel over them (the shape of a BLAS
//! micro-kernel on AVX2: twelve accumulators, two weight loads and six broadcasts per input).
//!
//! Why not gemm for these: gemm re-packs the weight matrix on every call, which costs more than the
//! arithmetic for a query's few dozen rows, and a dot-product kernel over the checkpoint's (out,
//! in) layout needs a horizontal reduction per output. Packing once removes both. Measured in
//! `scanaid bench embed` against the previous kernels (see README, "Speed").

// The tiles' row number addresses the registers and the memory rows at once; index loops say
// that more plainly than zipped iterators.
#![allow(clippy::needless_range_loop)]

use rayon::prelude::*;

/// Output columns per panel: two AVX registers of eight f32.
pub(crate) const NR: usize = 16;
/// Rows per register tile: 6 x 2 accumulators + 2 weights + 1 broadcast = 15 of 16 registers.
const MR: usize = 6;
/// Rows per task when a batch is split by rows: the rows' inputs stay in L2 (48 x 1536 x 4 B).
const ROW_CHUNK: usize = 48;

/// An element type weights can be packed in. The encoder packs f16 bits (half the memory traffic; a
/// query reads every weight once, so its cost is mostly that traffic); f32 panels exist for the
/// kernel's test, which checks the tiling exactly, without f16 rounding in the way.
pub(crate) trait PanelElem: Copy + Send + Sync + 'static {
    /// Whether the element is f16 bits (read by the AVX-512 tile, which widens 16 at a time).
    const IS_F16: bool;
    fn from_f32(v: f32) -> Self;
    // Used by the portable kernel; the AVX2 one widens through `load8`.
    #[allow(dead_code)]
    fn to_f32(self) -> f32;
    /// Eight consecutive elements widened to f32.
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma",
        target_feature = "f16c"
    ))]
    unsafe fn load8(ptr: *const Self) -> std::arch::x86_64::__m256;
}

#[cfg(test)]
impl PanelElem for f32 {
    const IS_F16: bool = false;
    fn from_f32(v: f32) -> Self {
        v
    }
    fn to_f32(self) -> f32 {
        self
    }
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma",
        target_feature = "f16c"
    ))]
    #[inline(always)]
    unsafe fn load8(ptr: *const Self) -> std::arch::x86_64::__m256 {
        std::arch::x86_64::_mm256_loadu_ps(ptr)
    }
}

/// f16 stored as its bits (read through pointers by the AVX2 kernel, by `to_f32` elsewhere).
#[derive(Clone, Copy)]
pub(crate) struct F16(#[allow(dead_code)] u16);

impl PanelElem for F16 {
    const IS_F16: bool = true;
    fn from_f32(v: f32) -> Self {
        F16(half::f16::from_f32(v).to_bits())
    }
    fn to_f32(self) -> f32 {
        half::f16::from_bits(self.0).to_f32()
    }
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma",
        target_feature = "f16c"
    ))]
    #[inline(always)]
    unsafe fn load8(ptr: *const Self) -> std::arch::x86_64::__m256 {
        use std::arch::x86_64::*;
        _mm256_cvtph_ps(_mm_loadu_si128(ptr as *const __m128i))
    }
}

/// A weight matrix (n outputs x k inputs) packed as ceil(n / 16) panels, each k rows of 16
/// columns; columns past n are zero.
pub(crate) struct Packed<T> {
    n: usize,
    k: usize,
    data: Vec<T>,
}

impl<T: PanelElem> Packed<T> {
    /// Packs `w`, stored (n, k) row-major as in the checkpoint.
    pub(crate) fn pack(w: &[f32], n: usize, k: usize) -> Self {
        assert_eq!(w.len(), n * k, "weights are n x k");
        let panels = n.div_ceil(NR);
        let mut data = vec![T::from_f32(0.0); panels * k * NR];
        for j in 0..n {
            let (panel, col) = (j / NR, j % NR);
            for p in 0..k {
                data[(panel * k + p) * NR + col] = T::from_f32(w[j * k + p]);
            }
        }
        Self { n, k, data }
    }

    fn panels(&self) -> usize {
        self.n.div_ceil(NR)
    }

    fn panel(&self, index: usize) -> &[T] {
        &self.data[index * self.k * NR..(index + 1) * self.k * NR]
    }
}

/// A raw output pointer handed to tasks that write disjoint regions (here and in `bert.rs`'s
/// attention).
#[derive(Clone, Copy)]
pub(crate) struct SendPtr(pub(crate) *mut f32);
// SAFETY: every user hands each task a region of the output no other task writes.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

impl SendPtr {
    // A method (not field access) so closures capture the whole Send + Sync wrapper.
    pub(crate) fn get(&self) -> *mut f32 {
        self.0
    }
}

/// out (m x n, row-major) = x (m x k, row-major) times the packed weights, plus `bias` (length n).
/// Few rows split the panels between two threads; many rows split the rows.
pub(crate) fn linear<T: PanelElem>(
    x: &[f32],
    m: usize,
    w: &Packed<T>,
    bias: &[f32],
    out: &mut [f32],
) {
    linear_on(Kernel::best(), x, m, w, bias, out)
}

/// Which register tile multiplies: both give the same sums in the same order (one FMA per input
/// and output, inputs in order), so their outputs are bit-identical; the wide one does 16 columns
/// per instruction instead of 8.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Kernel {
    /// 6 rows x 16 columns in AVX2 registers (or the portable loop without AVX2).
    Avx2,
    /// 12 rows x 16 columns in AVX-512 registers, where the CPU has them (checked at run time,
    /// since the build targets x86-64-v3 so that one binary runs on every machine we deploy to).
    Avx512,
}

impl Kernel {
    /// The widest kernel the CPU runs, unless `SCANAID_MATMUL_KERNEL=avx2` asks for the narrow one
    /// (to compare the two on one machine in one run: `scanaid bench embed`).
    pub(crate) fn best() -> Self {
        static CHOSEN: std::sync::OnceLock<Kernel> = std::sync::OnceLock::new();
        *CHOSEN.get_or_init(|| {
            let narrow = std::env::var("SCANAID_MATMUL_KERNEL").is_ok_and(|v| v == "avx2");
            #[cfg(target_arch = "x86_64")]
            if !narrow && std::arch::is_x86_feature_detected!("avx512f") {
                return Kernel::Avx512;
            }
            let _ = narrow;
            Kernel::Avx2
        })
    }
}

/// `linear` with a chosen kernel (tests run both on machines that have both).
pub(crate) fn linear_on<T: PanelElem>(
    kernel: Kernel,
    x: &[f32],
    m: usize,
    w: &Packed<T>,
    bias: &[f32],
    out: &mut [f32],
) {
    let (n, k) = (w.n, w.k);
    assert!(x.len() >= m * k && out.len() >= m * n && bias.len() == n);
    let ptr = SendPtr(out.as_mut_ptr());
    let panels = w.panels();
    if m <= ROW_CHUNK {
        if rayon::current_num_threads() > 1 && panels > 1 {
            let half = panels / 2;
            // SAFETY: the halves write the disjoint column ranges of their panels.
            rayon::join(
                || unsafe { run_block(kernel, x, 0, m, w, 0..half, bias, ptr) },
                || unsafe { run_block(kernel, x, 0, m, w, half..panels, bias, ptr) },
            );
        } else {
            // SAFETY: one task writes the whole output.
            unsafe { run_block(kernel, x, 0, m, w, 0..panels, bias, ptr) };
        }
        return;
    }
    let chunks = m.div_ceil(ROW_CHUNK);
    // SAFETY: each task writes the rows of its own chunk.
    (0..chunks).into_par_iter().for_each(|c| unsafe {
        let start = c * ROW_CHUNK;
        run_block(
            kernel,
            x,
            start,
            (start + ROW_CHUNK).min(m),
            w,
            0..panels,
            bias,
            ptr,
        )
    });
}

/// Rows `rows_start..rows_end` times the panels in `panels`, written into `out` (m x n).
///
/// # Safety
/// `out` must point to a row-major buffer with at least `rows_end` rows of `w.n` columns, and no
/// other thread may write those rows' columns of these panels meanwhile.
#[allow(clippy::too_many_arguments)]
unsafe fn run_block<T: PanelElem>(
    kernel: Kernel,
    x: &[f32],
    rows_start: usize,
    rows_end: usize,
    w: &Packed<T>,
    panels: std::ops::Range<usize>,
    bias: &[f32],
    out: SendPtr,
) {
    #[cfg(target_arch = "x86_64")]
    if kernel == Kernel::Avx512 {
        return wide::run_block(x, rows_start, rows_end, w, panels, bias, out);
    }
    let _ = kernel;
    let (n, k) = (w.n, w.k);
    for_each_tile(
        MR,
        x,
        rows_start,
        rows_end,
        w,
        panels,
        bias,
        out,
        |rows, x_rows, weights, b, dst, cols| match rows {
            6 => tile::<T, 6>(x_rows, k, weights, b, dst, n, cols),
            5 => tile::<T, 5>(x_rows, k, weights, b, dst, n, cols),
            4 => tile::<T, 4>(x_rows, k, weights, b, dst, n, cols),
            3 => tile::<T, 3>(x_rows, k, weights, b, dst, n, cols),
            2 => tile::<T, 2>(x_rows, k, weights, b, dst, n, cols),
            _ => tile::<T, 1>(x_rows, k, weights, b, dst, n, cols),
        },
    );
}

/// The walk both register tiles share: for each panel, its bias, then the rows in groups of up to
/// `mr`, each handed to `tile` with its inputs, the panel, the output position and the panel's
/// valid column count.
///
/// # Safety
/// As `run_block`; `tile` must write only the group's rows and the panel's columns at `dst`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn for_each_tile<T: PanelElem>(
    mr: usize,
    x: &[f32],
    rows_start: usize,
    rows_end: usize,
    w: &Packed<T>,
    panels: std::ops::Range<usize>,
    bias: &[f32],
    out: SendPtr,
    mut tile: impl FnMut(usize, &[f32], &[T], &[f32; NR], *mut f32, usize),
) {
    let (n, k) = (w.n, w.k);
    for panel in panels {
        let col0 = panel * NR;
        let cols = NR.min(n - col0);
        let mut panel_bias = [0f32; NR];
        panel_bias[..cols].copy_from_slice(&bias[col0..col0 + cols]);
        let weights = w.panel(panel);
        let mut row = rows_start;
        while row < rows_end {
            let rows = mr.min(rows_end - row);
            let x_rows = &x[row * k..(row + rows) * k];
            tile(
                rows,
                x_rows,
                weights,
                &panel_bias,
                out.get().add(row * n + col0),
                cols,
            );
            row += rows;
        }
    }
}

/// M rows (x, M x k) times one panel (k x 16) plus bias, into the first `cols` columns of M rows of
/// `dst` (row stride `ldo`).
///
/// # Safety
/// `dst` must be valid for M rows of `cols` columns at stride `ldo`.
#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma",
    target_feature = "f16c"
))]
#[inline(always)]
unsafe fn tile<T: PanelElem, const M: usize>(
    x: &[f32],
    k: usize,
    panel: &[T],
    bias: &[f32; NR],
    dst: *mut f32,
    ldo: usize,
    cols: usize,
) {
    use std::arch::x86_64::*;
    debug_assert!(x.len() >= M * k && panel.len() >= k * NR);
    let mut lo = [_mm256_setzero_ps(); M];
    let mut hi = [_mm256_setzero_ps(); M];
    let xp = x.as_ptr();
    let wp = panel.as_ptr();
    for p in 0..k {
        let w0 = T::load8(wp.add(p * NR));
        let w1 = T::load8(wp.add(p * NR + 8));
        for i in 0..M {
            let xv = _mm256_broadcast_ss(&*xp.add(i * k + p));
            lo[i] = _mm256_fmadd_ps(xv, w0, lo[i]);
            hi[i] = _mm256_fmadd_ps(xv, w1, hi[i]);
        }
    }
    let b0 = _mm256_loadu_ps(bias.as_ptr());
    let b1 = _mm256_loadu_ps(bias.as_ptr().add(8));
    for i in 0..M {
        let r0 = _mm256_add_ps(lo[i], b0);
        let r1 = _mm256_add_ps(hi[i], b1);
        let row = dst.add(i * ldo);
        if cols == NR {
            _mm256_storeu_ps(row, r0);
            _mm256_storeu_ps(row.add(8), r1);
        } else {
            let mut tmp = [0f32; NR];
            _mm256_storeu_ps(tmp.as_mut_ptr(), r0);
            _mm256_storeu_ps(tmp.as_mut_ptr().add(8), r1);
            std::ptr::copy_nonoverlapping(tmp.as_ptr(), row, cols);
        }
    }
}

/// Portable version of the tile for machines without AVX2/FMA/F16C.
///
/// # Safety
/// As the AVX2 version.
#[cfg(not(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma",
    target_feature = "f16c"
)))]
unsafe fn tile<T: PanelElem, const M: usize>(
    x: &[f32],
    k: usize,
    panel: &[T],
    bias: &[f32; NR],
    dst: *mut f32,
    ldo: usize,
    cols: usize,
) {
    for i in 0..M {
        let mut acc = *bias;
        for p in 0..k {
            let xv = x[i * k + p];
            for c in 0..NR {
                acc[c] = xv.mul_add(panel[p * NR + c].to_f32(), acc[c]);
            }
        }
        std::ptr::copy_nonoverlapping(acc.as_ptr(), dst.add(i * ldo), cols);
    }
}

/// The AVX-512 version of `run_block`: one 16-column panel fills one register, so a tile holds
/// 12 rows (12 accumulators, enough independent FMAs to cover their latency on two FMA ports).
#[cfg(target_arch = "x86_64")]
mod wide {
    use super::{Packed, PanelElem, SendPtr, NR};
    use std::arch::x86_64::*;

    /// Rows per register tile: 12 accumulators + 1 weight register of 32.
    const MR: usize = 12;

    /// # Safety
    /// As `super::run_block`, and the CPU must have AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn run_block<T: PanelElem>(
        x: &[f32],
        rows_start: usize,
        rows_end: usize,
        w: &Packed<T>,
        panels: std::ops::Range<usize>,
        bias: &[f32],
        out: SendPtr,
    ) {
        let (n, k) = (w.n, w.k);
        super::for_each_tile(
            MR,
            x,
            rows_start,
            rows_end,
            w,
            panels,
            bias,
            out,
            |rows, x_rows, weights, b, dst, cols| {
                macro_rules! tiles {
                ($($m:literal)*) => {
                    match rows {
                        $($m => tile::<T, $m>(x_rows, k, weights, b, dst, n, cols),)*
                        _ => tile::<T, 1>(x_rows, k, weights, b, dst, n, cols),
                    }
                };
            }
                tiles!(12 11 10 9 8 7 6 5 4 3 2);
            },
        );
    }

    /// Sixteen panel elements widened to f32.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn load16<T: PanelElem>(ptr: *const T) -> __m512 {
        if T::IS_F16 {
            _mm512_cvtph_ps(_mm256_loadu_si256(ptr as *const __m256i))
        } else {
            _mm512_loadu_ps(ptr as *const f32)
        }
    }

    /// M rows times one panel plus bias (see `super::tile`).
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn tile<T: PanelElem, const M: usize>(
        x: &[f32],
        k: usize,
        panel: &[T],
        bias: &[f32; NR],
        dst: *mut f32,
        ldo: usize,
        cols: usize,
    ) {
        debug_assert!(x.len() >= M * k && panel.len() >= k * NR);
        let mut acc = [_mm512_setzero_ps(); M];
        let xp = x.as_ptr();
        let wp = panel.as_ptr();
        for p in 0..k {
            let wv = load16(wp.add(p * NR));
            for i in 0..M {
                let xv = _mm512_set1_ps(*xp.add(i * k + p));
                acc[i] = _mm512_fmadd_ps(xv, wv, acc[i]);
            }
        }
        let b = _mm512_loadu_ps(bias.as_ptr());
        let mask: __mmask16 = if cols == NR { !0 } else { (1u16 << cols) - 1 };
        for (i, a) in acc.iter().enumerate() {
            _mm512_mask_storeu_ps(dst.add(i * ldo), mask, _mm512_add_ps(*a, b));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(x: &[f32], m: usize, k: usize, w: &[f32], n: usize, bias: &[f32]) -> Vec<f32> {
        let mut out = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] = (0..k).map(|p| x[i * k + p] * w[j * k + p]).sum::<f32>() + bias[j];
            }
        }
        out
    }

    /// Every row-tile size, a partial last panel, the few-rows and many-rows splits, both element
    /// types.
    #[test]
    fn packed_linear_matches_the_definition() {
        for (m, k, n) in [
            (1, 8, 16),
            (5, 24, 20),
            (7, 16, 40),
            (13, 32, 33),
            (100, 40, 50),
        ] {
            let x: Vec<f32> = (0..m * k)
                .map(|i| ((i * 5 % 11) as f32 - 5.0) / 7.0)
                .collect();
            let w: Vec<f32> = (0..n * k)
                .map(|i| ((i * 7 % 13) as f32 - 6.0) / 10.0)
                .collect();
            let bias: Vec<f32> = (0..n).map(|i| i as f32 / 10.0).collect();
            let want = reference(&x, m, k, &w, n, &bias);
            let run = |kernel: Kernel, f16: bool| {
                let mut out = vec![f32::NAN; m * n];
                if f16 {
                    linear_on(
                        kernel,
                        &x,
                        m,
                        &Packed::<F16>::pack(&w, n, k),
                        &bias,
                        &mut out,
                    );
                } else {
                    linear_on(
                        kernel,
                        &x,
                        m,
                        &Packed::<f32>::pack(&w, n, k),
                        &bias,
                        &mut out,
                    );
                }
                out
            };
            for kernel in [Kernel::Avx2, Kernel::best()] {
                for (i, (got, want)) in run(kernel, false).iter().zip(&want).enumerate() {
                    assert!(
                        (got - want).abs() < 1e-4,
                        "{kernel:?} f32 m={m} k={k} n={n} [{i}]: {got} vs {want}"
                    );
                }
                for (i, (got, want)) in run(kernel, true).iter().zip(&want).enumerate() {
                    // f16 weights: agreement to f16 rounding.
                    assert!(
                        (got - want).abs() < 2e-2,
                        "{kernel:?} f16 m={m} k={k} n={n} [{i}]: {got} vs {want}"
                    );
                }
            }
            // Same sums in the same order: the kernels agree bit for bit (where both exist).
            assert_eq!(run(Kernel::Avx2, true), run(Kernel::best(), true));
        }
    }
}
