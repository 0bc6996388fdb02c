//! One attention head of one sequence in AVX-512 registers: scores, softmax and P x V, with Q, K
//! and V read in place from the fused QKV rows.
//!
//! Why: the gemm crate runs its AVX2 kernel here (its AVX-512 path needs a nightly compiler) and
//! packs both operands on every call; with a head width of 32 the packing is a large share of
//! each call. `perf` on a batch of ~128-256-token passages put the gemm calls at 16% of the
//! embedding time. K is transposed once per head (32 x len, cheap beside the len x len x 32
//! multiply-adds) so a score row is broadcast FMAs over 16 keys at a time; V is read row by row.
//! The sums are the same products in a different order from the portable path, so outputs agree
//! to float rounding (tested).

use std::arch::x86_64::*;

/// The head width this kernel is written for (MiniLM and multilingual-e5-small: 384 / 12).
pub(crate) const HEAD: usize = 32;

/// Whether this CPU runs the kernel (std caches the detection).
pub(crate) fn runs_here() -> bool {
    is_x86_feature_detected!("avx512f")
}

/// Where one head's Q, K and V rows are, and where its output rows go.
pub(crate) struct HeadAt {
    pub(crate) qkv: *const f32,
    /// Floats between consecutive tokens' rows in `qkv` (3 x hidden).
    pub(crate) stride: usize,
    /// Offsets of this head's first Q, K and V values in `qkv`.
    pub(crate) q0: usize,
    pub(crate) k0: usize,
    pub(crate) v0: usize,
    pub(crate) len: usize,
    pub(crate) out: *mut f32,
    /// Floats between consecutive output rows (hidden).
    pub(crate) out_stride: usize,
}

/// Softmax(Q K^T x scale) V for one head. `kt` and `scores` are scratch, resized here.
///
/// # Safety
/// `runs_here()` must be true; the pointers in `at` must be valid for `len` rows of their
/// strides, and the output rows of this head must not be written by anyone else meanwhile.
pub(crate) unsafe fn head(at: &HeadAt, scale: f32, kt: &mut Vec<f32>, scores: &mut Vec<f32>) {
    let len = at.len;
    let lp = len.next_multiple_of(16);
    kt.clear();
    kt.resize(HEAD * lp, 0.0);
    for j in 0..len {
        let k = at.qkv.add(at.k0 + j * at.stride);
        for c in 0..HEAD {
            kt[c * lp + j] = *k.add(c);
        }
    }
    scores.resize(len * lp, 0.0);
    scores_into(at, kt, lp, scores);
    for row in scores.chunks_exact_mut(lp) {
        softmax_row(&mut row[..len], scale);
    }
    weighted_values(at, scores, lp);
}

/// Softmax of `row x scale` in place, 16 values at a time (the tail masked). The exp is
/// `bert::fast_exp`'s, in registers: written out because the portable softmax, compiled for
/// AVX2, was 8.6% of a batch's time once the matmuls ran here.
#[target_feature(enable = "avx512f")]
unsafe fn softmax_row(row: &mut [f32], scale: f32) {
    let len = row.len();
    let p = row.as_mut_ptr();
    let whole = len / 16 * 16;
    let tail: __mmask16 = ((1u32 << (len - whole)) - 1) as __mmask16;
    let mut max = _mm512_set1_ps(f32::NEG_INFINITY);
    for c in (0..whole).step_by(16) {
        max = _mm512_max_ps(max, _mm512_loadu_ps(p.add(c)));
    }
    if tail != 0 {
        max = _mm512_max_ps(max, _mm512_mask_loadu_ps(max, tail, p.add(whole)));
    }
    let scale_v = _mm512_set1_ps(scale);
    let shift = _mm512_set1_ps(_mm512_reduce_max_ps(max) * scale);
    let mut sum = _mm512_setzero_ps();
    for c in (0..whole).step_by(16) {
        let e = exp16(_mm512_fmsub_ps(_mm512_loadu_ps(p.add(c)), scale_v, shift));
        _mm512_storeu_ps(p.add(c), e);
        sum = _mm512_add_ps(sum, e);
    }
    if tail != 0 {
        let x = _mm512_maskz_loadu_ps(tail, p.add(whole));
        let e = _mm512_maskz_mov_ps(tail, exp16(_mm512_fmsub_ps(x, scale_v, shift)));
        _mm512_mask_storeu_ps(p.add(whole), tail, e);
        sum = _mm512_add_ps(sum, e);
    }
    let inv = _mm512_set1_ps(1.0 / _mm512_reduce_add_ps(sum));
    for c in (0..whole).step_by(16) {
        _mm512_storeu_ps(p.add(c), _mm512_mul_ps(_mm512_loadu_ps(p.add(c)), inv));
    }
    if tail != 0 {
        let x = _mm512_maskz_loadu_ps(tail, p.add(whole));
        _mm512_mask_storeu_ps(p.add(whole), tail, _mm512_mul_ps(x, inv));
    }
}

/// e^x of 16 values: 2^(x log2 e) as an integer power built in the exponent bits times a degree-6
/// polynomial of the rest, as `bert::fast_exp` (relative error about 2e-7).
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn exp16(x: __m512) -> __m512 {
    const SHIFT: f32 = 12_582_912.0;
    let clamped = _mm512_min_ps(
        _mm512_max_ps(x, _mm512_set1_ps(-87.0)),
        _mm512_set1_ps(88.0),
    );
    let a = _mm512_mul_ps(clamped, _mm512_set1_ps(std::f32::consts::LOG2_E));
    let t = _mm512_add_ps(a, _mm512_set1_ps(SHIFT));
    let n = _mm512_sub_ps(t, _mm512_set1_ps(SHIFT));
    let f = _mm512_mul_ps(_mm512_sub_ps(a, n), _mm512_set1_ps(std::f32::consts::LN_2));
    let mut poly = _mm512_set1_ps(1.0 / 720.0);
    for c in [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
        poly = _mm512_fmadd_ps(poly, f, _mm512_set1_ps(c));
    }
    let exponent = _mm512_add_epi32(
        _mm512_sub_epi32(
            _mm512_castps_si512(t),
            _mm512_set1_epi32(SHIFT.to_bits() as i32),
        ),
        _mm512_set1_epi32(127),
    );
    _mm512_mul_ps(_mm512_castsi512_ps(_mm512_slli_epi32::<23>(exponent)), poly)
}

/// scores (len x lp) = Q K^T, in tiles of up to 4 query rows x 4 groups of 16 keys.
#[target_feature(enable = "avx512f")]
unsafe fn scores_into(at: &HeadAt, kt: &[f32], lp: usize, scores: &mut [f32]) {
    let chunks = lp / 16;
    let mut row = 0;
    while row < at.len {
        let rows = (at.len - row).min(4);
        let mut chunk = 0;
        while chunk < chunks {
            let wide = if chunks - chunk >= 4 { 4 } else { 1 };
            macro_rules! tiles {
                ($(($r:literal, $c:literal))*) => {
                    match (rows, wide) {
                        $(($r, $c) => score_tile::<$r, $c>(at, kt, lp, scores, row, chunk),)*
                        _ => unreachable!("rows 1-4, groups 1 or 4"),
                    }
                };
            }
            tiles!((1, 1)(2, 1)(3, 1)(4, 1)(1, 4)(2, 4)(3, 4)(4, 4));
            chunk += wide;
        }
        row += rows;
    }
}

#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn score_tile<const R: usize, const C: usize>(
    at: &HeadAt,
    kt: &[f32],
    lp: usize,
    scores: &mut [f32],
    row: usize,
    chunk: usize,
) {
    let mut acc = [[_mm512_setzero_ps(); C]; R];
    let kp = kt.as_ptr().add(chunk * 16);
    for d in 0..HEAD {
        let mut keys = [_mm512_setzero_ps(); C];
        for (c, key) in keys.iter_mut().enumerate() {
            *key = _mm512_loadu_ps(kp.add(d * lp + c * 16));
        }
        for (i, acc_row) in acc.iter_mut().enumerate() {
            let q = _mm512_set1_ps(*at.qkv.add(at.q0 + (row + i) * at.stride + d));
            for c in 0..C {
                acc_row[c] = _mm512_fmadd_ps(q, keys[c], acc_row[c]);
            }
        }
    }
    let sp = scores.as_mut_ptr();
    for (i, acc_row) in acc.iter().enumerate() {
        for (c, v) in acc_row.iter().enumerate() {
            _mm512_storeu_ps(sp.add((row + i) * lp + (chunk + c) * 16), *v);
        }
    }
}

/// out rows = P (len x lp, the first len columns) times V, in tiles of up to 12 rows x 32.
#[target_feature(enable = "avx512f")]
unsafe fn weighted_values(at: &HeadAt, scores: &[f32], lp: usize) {
    let mut row = 0;
    while row < at.len {
        let rows = (at.len - row).min(12);
        macro_rules! tiles {
            ($($r:literal)*) => {
                match rows {
                    $($r => value_tile::<$r>(at, scores, lp, row),)*
                    _ => unreachable!("rows 1-12"),
                }
            };
        }
        tiles!(1 2 3 4 5 6 7 8 9 10 11 12);
        row += rows;
    }
}

#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn value_tile<const R: usize>(at: &HeadAt, scores: &[f32], lp: usize, row: usize) {
    let mut low = [_mm512_setzero_ps(); R];
    let mut high = [_mm512_setzero_ps(); R];
    let sp = scores.as_ptr().add(row * lp);
    for j in 0..at.len {
        let v = at.qkv.add(at.v0 + j * at.stride);
        let (v_low, v_high) = (_mm512_loadu_ps(v), _mm512_loadu_ps(v.add(16)));
        for i in 0..R {
            let p = _mm512_set1_ps(*sp.add(i * lp + j));
            low[i] = _mm512_fmadd_ps(p, v_low, low[i]);
            high[i] = _mm512_fmadd_ps(p, v_high, high[i]);
        }
    }
    for i in 0..R {
        let out = at.out.add((row + i) * at.out_stride);
        _mm512_storeu_ps(out, low[i]);
        _mm512_storeu_ps(out.add(16), high[i]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Softmax(Q K^T x scale) V computed the plain way, in f64.
    fn reference(
        qkv: &[f32],
        stride: usize,
        q0: usize,
        k0: usize,
        v0: usize,
        len: usize,
        scale: f32,
    ) -> Vec<f64> {
        let mut out = vec![0f64; len * HEAD];
        for i in 0..len {
            let q = &qkv[q0 + i * stride..q0 + i * stride + HEAD];
            let logits: Vec<f64> = (0..len)
                .map(|j| {
                    let k = &qkv[k0 + j * stride..k0 + j * stride + HEAD];
                    q.iter()
                        .zip(k)
                        .map(|(a, b)| *a as f64 * *b as f64)
                        .sum::<f64>()
                        * scale as f64
                })
                .collect();
            let max = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let weights: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
            let total: f64 = weights.iter().sum();
            for (j, w) in weights.iter().enumerate() {
                let v = &qkv[v0 + j * stride..v0 + j * stride + HEAD];
                for d in 0..HEAD {
                    out[i * HEAD + d] += w / total * v[d] as f64;
                }
            }
        }
        out
    }

    #[test]
    fn one_head_matches_the_definition_at_every_tile_edge() {
        if !runs_here() {
            eprintln!("no AVX-512 here: nothing to check");
            return;
        }
        // Two heads of a 3 x 64 row, so strides and offsets are not trivial; lengths that end
        // inside a 16-key group, on one, and past whole 4-group and 12-row tiles.
        let (hidden, stride) = (64, 192);
        let (mut kt, mut scores) = (Vec::new(), Vec::new());
        for len in [1usize, 5, 16, 17, 49, 64, 65, 100, 130, 257] {
            let qkv: Vec<f32> = (0..len * stride)
                .map(|i| (((i * 7919) % 1009) as f32 / 1009.0 - 0.5) * 3.0)
                .collect();
            for head_index in 0..2 {
                let (q0, k0, v0) = (
                    head_index * HEAD,
                    hidden + head_index * HEAD,
                    2 * hidden + head_index * HEAD,
                );
                let mut ctx = vec![f32::NAN; len * hidden];
                let at = HeadAt {
                    qkv: qkv.as_ptr(),
                    stride,
                    q0,
                    k0,
                    v0,
                    len,
                    out: unsafe { ctx.as_mut_ptr().add(head_index * HEAD) },
                    out_stride: hidden,
                };
                let scale = 1.0 / (HEAD as f32).sqrt();
                unsafe { head(&at, scale, &mut kt, &mut scores) };
                let want = reference(&qkv, stride, q0, k0, v0, len, scale);
                for i in 0..len {
                    for d in 0..HEAD {
                        let got = ctx[i * hidden + head_index * HEAD + d] as f64;
                        let w = want[i * HEAD + d];
                        assert!(
                            (got - w).abs() < 1e-5,
                            "len {len}, head {head_index}, row {i}, dim {d}: {got} against {w}"
                        );
                    }
                }
                // The other head's columns are untouched.
                let other = (1 - head_index) * HEAD;
                assert!(ctx
                    .chunks(hidden)
                    .all(|r| r[other..other + HEAD].iter().all(|v| v.is_nan())));
            }
        }
    }

    #[test]
    fn exp16_matches_exp() {
        if !runs_here() {
            return;
        }
        for start in (-2000..2000).step_by(16) {
            let xs: Vec<f32> = (start..start + 16).map(|i| i as f32 * 0.04).collect();
            let mut got = [0f32; 16];
            unsafe { _mm512_storeu_ps(got.as_mut_ptr(), exp16(_mm512_loadu_ps(xs.as_ptr()))) };
            for (x, g) in xs.iter().zip(got) {
                let want = x.exp();
                let tolerance = if x.abs() <= 10.0 { 1e-6 } else { 1e-5 };
                assert!(
                    ((g - want) / want).abs() < tolerance,
                    "exp({x}) = {g} want {want}"
                );
            }
        }
    }
}
