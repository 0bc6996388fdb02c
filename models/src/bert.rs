//! A BERT encoder forward pass for sentence embedding on CPU, built on `gemm` (candle's own matmul
//! kernel crate). Why not candle-transformers' `BertModel`: measured here, it spends about a third of
//! a short query's time re-packing weight matrices inside gemm and most of the rest in thread wake-ups
//! of a dozen tiny per-head matmuls, and it needs padded batches. This forward
//! - runs every linear layer over all tokens of a batch at once with no padding (sequences are packed
//!   end to end; attention is computed per sequence over its own length);
//! - fuses the Q, K and V projections into one matmul;
//! - for few rows (a query) uses a dot-product kernel over the weights' natural (out, in) layout that
//!   reads each weight once, split across cores, instead of gemm's packing.
//!
//! Its output matches candle's `BertModel` to float rounding (tested in tests/reference_cosine.rs).

use std::collections::HashMap;

use candle_core::Tensor;
use rayon::prelude::*;

use crate::error::{ModelError, Result};

/// Shape of a BERT encoder.
#[derive(Debug, Clone, Copy)]
pub struct BertShape {
    pub hidden: usize,
    pub heads: usize,
    pub layers: usize,
    pub intermediate: usize,
    pub layer_norm_eps: f32,
    pub max_positions: usize,
}

/// A linear layer's weights, (out, in) row-major as in the checkpoint, plus an f16 copy that the
/// few-rows kernel streams: a query's cost is reading the weights from memory, and f16 halves that.
struct Weights {
    f32: Vec<f32>,
    f16: Vec<u16>,
}

impl Weights {
    fn new(f32: Vec<f32>) -> Self {
        let f16 = f32
            .iter()
            .map(|&v| half::f16::from_f32(v).to_bits())
            .collect();
        Self { f32, f16 }
    }
}

struct Layer {
    qkv_w: Weights, // (3 * hidden, hidden)
    qkv_b: Vec<f32>,
    out_w: Weights, // (hidden, hidden)
    out_b: Vec<f32>,
    ln1_g: Vec<f32>,
    ln1_b: Vec<f32>,
    ff1_w: Weights, // (intermediate, hidden)
    ff1_b: Vec<f32>,
    ff2_w: Weights, // (hidden, intermediate)
    ff2_b: Vec<f32>,
    ln2_g: Vec<f32>,
    ln2_b: Vec<f32>,
}

pub struct BertEncoder {
    shape: BertShape,
    word: Vec<f32>,
    position: Vec<f32>,
    token_type: Vec<f32>,
    emb_ln_g: Vec<f32>,
    emb_ln_b: Vec<f32>,
    layers: Vec<Layer>,
}

/// Up to this many rows a linear layer uses the dot-product kernel instead of gemm.
const SMALL_M: usize = 48;
/// Up to this sequence length attention is computed with plain loops instead of gemm.
const SMALL_ATTENTION: usize = 48;

impl BertEncoder {
    /// Builds the encoder from named tensors (HF BERT names, with or without a `bert.` prefix).
    pub fn from_tensors(tensors: &HashMap<String, Tensor>, shape: BertShape) -> Result<Self> {
        let get = |name: &str| -> Result<Vec<f32>> {
            let candidates = [name.to_string(), format!("bert.{name}")];
            let tensor = candidates
                .iter()
                .find_map(|n| tensors.get(n))
                .ok_or_else(|| ModelError::Encode(format!("model weights lack tensor {name}")))?;
            Ok(tensor
                .to_dtype(candle_core::DType::F32)?
                .flatten_all()?
                .to_vec1::<f32>()?)
        };
        let ln = |prefix: &str| -> Result<(Vec<f32>, Vec<f32>)> {
            let g =
                get(&format!("{prefix}.weight")).or_else(|_| get(&format!("{prefix}.gamma")))?;
            let b = get(&format!("{prefix}.bias")).or_else(|_| get(&format!("{prefix}.beta")))?;
            Ok((g, b))
        };
        let (emb_ln_g, emb_ln_b) = ln("embeddings.LayerNorm")?;
        let mut layers = Vec::with_capacity(shape.layers);
        for i in 0..shape.layers {
            let p = format!("encoder.layer.{i}");
            let mut qkv_w = get(&format!("{p}.attention.self.query.weight"))?;
            qkv_w.extend(get(&format!("{p}.attention.self.key.weight"))?);
            qkv_w.extend(get(&format!("{p}.attention.self.value.weight"))?);
            let mut qkv_b = get(&format!("{p}.attention.self.query.bias"))?;
            qkv_b.extend(get(&format!("{p}.attention.self.key.bias"))?);
            qkv_b.extend(get(&format!("{p}.attention.self.value.bias"))?);
            let (ln1_g, ln1_b) = ln(&format!("{p}.attention.output.LayerNorm"))?;
            let (ln2_g, ln2_b) = ln(&format!("{p}.output.LayerNorm"))?;
            layers.push(Layer {
                qkv_w: Weights::new(qkv_w),
                qkv_b,
                out_w: Weights::new(get(&format!("{p}.attention.output.dense.weight"))?),
                out_b: get(&format!("{p}.attention.output.dense.bias"))?,
                ln1_g,
                ln1_b,
                ff1_w: Weights::new(get(&format!("{p}.intermediate.dense.weight"))?),
                ff1_b: get(&format!("{p}.intermediate.dense.bias"))?,
                ff2_w: Weights::new(get(&format!("{p}.output.dense.weight"))?),
                ff2_b: get(&format!("{p}.output.dense.bias"))?,
                ln2_g,
                ln2_b,
            });
        }
        let encoder = Self {
            shape,
            word: get("embeddings.word_embeddings.weight")?,
            position: get("embeddings.position_embeddings.weight")?,
            token_type: get("embeddings.token_type_embeddings.weight")?,
            emb_ln_g,
            emb_ln_b,
            layers,
        };
        let h = shape.hidden;
        if h % shape.heads != 0
            || h % 8 != 0
            || shape.intermediate % 8 != 0
            || encoder.layers[0].ff1_w.f32.len() != h * shape.intermediate
        {
            return Err(ModelError::Encode(
                "model weights do not match the configured BERT shape".into(),
            ));
        }
        Ok(encoder)
    }

    pub fn hidden(&self) -> usize {
        self.shape.hidden
    }

    /// Mean-pooled, L2-normalised sentence vectors of token-id sequences (each already truncated
    /// to the model's window and carrying its special tokens).
    pub fn embed(&self, sequences: &[Vec<u32>]) -> Vec<Vec<f32>> {
        let h = self.shape.hidden;
        let offsets: Vec<usize> = std::iter::once(0)
            .chain(sequences.iter().scan(0, |acc, s| {
                *acc += s.len();
                Some(*acc)
            }))
            .collect();
        let total = *offsets.last().unwrap_or(&0);
        if total == 0 {
            return vec![vec![0.0; h]; sequences.len()];
        }
        let vocab = self.word.len() / h;
        // Embeddings: word + position + token type 0, then layer norm.
        let mut x = vec![0f32; total * h];
        for (s, seq) in sequences.iter().enumerate() {
            for (p, &id) in seq.iter().enumerate() {
                let row = &mut x[(offsets[s] + p) * h..(offsets[s] + p + 1) * h];
                let id = (id as usize).min(vocab - 1);
                let pos = p.min(self.shape.max_positions - 1);
                let w = &self.word[id * h..(id + 1) * h];
                let ps = &self.position[pos * h..(pos + 1) * h];
                let t = &self.token_type[..h];
                for i in 0..h {
                    row[i] = w[i] + ps[i] + t[i];
                }
            }
        }
        layer_norm(
            &mut x,
            h,
            &self.emb_ln_g,
            &self.emb_ln_b,
            self.shape.layer_norm_eps,
        );

        let mut qkv = vec![0f32; total * 3 * h];
        let mut ctx = vec![0f32; total * h];
        let mut proj = vec![0f32; total * h];
        let mut ff = vec![0f32; total * self.shape.intermediate];
        for layer in &self.layers {
            linear(&x, total, h, &layer.qkv_w, &layer.qkv_b, &mut qkv);
            self.attention(&qkv, &offsets, &mut ctx);
            linear(&ctx, total, h, &layer.out_w, &layer.out_b, &mut proj);
            add_assign(&mut x, &proj);
            layer_norm(
                &mut x,
                h,
                &layer.ln1_g,
                &layer.ln1_b,
                self.shape.layer_norm_eps,
            );
            linear(&x, total, h, &layer.ff1_w, &layer.ff1_b, &mut ff);
            apply_gelu(&mut ff[..total * self.shape.intermediate]);
            linear(
                &ff,
                total,
                self.shape.intermediate,
                &layer.ff2_w,
                &layer.ff2_b,
                &mut proj,
            );
            add_assign(&mut x, &proj);
            layer_norm(
                &mut x,
                h,
                &layer.ln2_g,
                &layer.ln2_b,
                self.shape.layer_norm_eps,
            );
        }
        // Mean pooling over each sequence's tokens, then L2 normalisation.
        (0..sequences.len())
            .map(|s| {
                let n = (offsets[s + 1] - offsets[s]).max(1);
                let mut v = vec![0f32; h];
                for row in x[offsets[s] * h..offsets[s + 1] * h].chunks_exact(h) {
                    add_assign(&mut v, row);
                }
                let inv = 1.0 / n as f32;
                v.iter_mut().for_each(|a| *a *= inv);
                let norm = v.iter().map(|a| a * a).sum::<f32>().sqrt().max(1e-12);
                v.iter_mut().for_each(|a| *a /= norm);
                v
            })
            .collect()
    }

    /// Multi-head self-attention of every sequence over its own tokens (no padding, no mask).
    fn attention(&self, qkv: &[f32], offsets: &[usize], ctx: &mut [f32]) {
        let h = self.shape.hidden;
        let heads = self.shape.heads;
        let hd = h / heads;
        let scale = 1.0 / (hd as f32).sqrt();
        let tasks: Vec<(usize, usize)> = (0..offsets.len() - 1)
            .flat_map(|s| (0..heads).map(move |head| (s, head)))
            .collect();
        let ctx_ptr = SendPtr(ctx.as_mut_ptr());
        let run = |&(s, head): &(usize, usize)| {
            let (start, len) = (offsets[s], offsets[s + 1] - offsets[s]);
            if len == 0 {
                return;
            }
            let q0 = start * 3 * h + head * hd;
            let k0 = q0 + h;
            let v0 = q0 + 2 * h;
            let mut scores = vec![0f32; len * len];
            if len <= SMALL_ATTENTION {
                for i in 0..len {
                    let q = &qkv[q0 + i * 3 * h..q0 + i * 3 * h + hd];
                    for j in 0..len {
                        let k = &qkv[k0 + j * 3 * h..k0 + j * 3 * h + hd];
                        scores[i * len + j] = dot(q, k);
                    }
                }
            } else {
                // SAFETY: the pointers and strides describe slices inside `qkv` and `scores`.
                unsafe {
                    gemm::gemm(
                        len,
                        len,
                        hd,
                        scores.as_mut_ptr(),
                        1,
                        len as isize,
                        false,
                        qkv.as_ptr().add(q0),
                        1,
                        (3 * h) as isize,
                        qkv.as_ptr().add(k0),
                        (3 * h) as isize,
                        1,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    );
                }
            }
            for row in scores.chunks_exact_mut(len) {
                softmax_scaled(row, scale);
            }
            // SAFETY: task (s, head) writes only rows start..start+len, columns head*hd..(head+1)*hd
            // of ctx; no two tasks share that region.
            unsafe {
                let out = ctx_ptr.get().add(start * h + head * hd);
                if len <= SMALL_ATTENTION {
                    for i in 0..len {
                        let dst = std::slice::from_raw_parts_mut(out.add(i * h), hd);
                        dst.iter_mut().for_each(|d| *d = 0.0);
                        for j in 0..len {
                            let p = scores[i * len + j];
                            let v = &qkv[v0 + j * 3 * h..v0 + j * 3 * h + hd];
                            for c in 0..hd {
                                dst[c] = p.mul_add(v[c], dst[c]);
                            }
                        }
                    }
                } else {
                    gemm::gemm(
                        len,
                        hd,
                        len,
                        out,
                        1,
                        h as isize,
                        false,
                        scores.as_ptr(),
                        1,
                        len as isize,
                        qkv.as_ptr().add(v0),
                        1,
                        (3 * h) as isize,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    );
                }
            }
        };
        if tasks.len() > 1 && offsets[offsets.len() - 1] > SMALL_ATTENTION {
            tasks.par_iter().for_each(run);
        } else {
            tasks.iter().for_each(run);
        }
    }
}

#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: used only to hand disjoint output regions to attention tasks (see `attention`).
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

impl SendPtr {
    // A method (not field access) so closures capture the whole Send + Sync wrapper.
    fn get(&self) -> *mut f32 {
        self.0
    }
}

/// out (m x n) = x (m x k) times w^T, w stored (n x k) row-major as in the checkpoint; plus bias.
fn linear(x: &[f32], m: usize, k: usize, weights: &Weights, b: &[f32], out: &mut [f32]) {
    let w = &weights.f32[..];
    let n = b.len();
    debug_assert_eq!(w.len(), n * k);
    debug_assert!(out.len() >= m * n);
    let out = &mut out[..m * n];
    if m <= SMALL_M {
        // Split the output columns in two halves, one per core; each reads half the weights once.
        let half = (n / 2 + 7) / 8 * 8;
        let (left, right) = rayon::join(
            || small_linear(x, m, k, &weights.f16[..half * k], &b[..half]),
            || small_linear(x, m, k, &weights.f16[half * k..], &b[half..]),
        );
        for i in 0..m {
            out[i * n..i * n + half].copy_from_slice(&left[i * half..(i + 1) * half]);
            out[i * n + half..(i + 1) * n]
                .copy_from_slice(&right[i * (n - half)..(i + 1) * (n - half)]);
        }
        return;
    }
    let threads = rayon::current_num_threads();
    let parallelism = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: dimensions and strides describe `x` (m x k, row-major), `w` viewed as (k x n) with
    // row stride 1 and column stride k, and `out` (m x n, row-major).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            false,
            x.as_ptr(),
            1,
            k as isize,
            w.as_ptr(),
            k as isize,
            1,
            0.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
    out.par_chunks_mut(n * 64).for_each(|rows| {
        for row in rows.chunks_exact_mut(n) {
            add_assign(row, b);
        }
    });
}

/// Few rows: four output columns at a time, two input rows at a time (eight independent
/// accumulators keep both FMA units busy), each f16 weight row read from memory once per call.
fn small_linear(x: &[f32], m: usize, k: usize, w: &[u16], b: &[f32]) -> Vec<f32> {
    let n = b.len();
    let mut out = vec![0f32; m * n];
    let mut j = 0;
    while j + 4 <= n {
        let rows = [
            &w[j * k..(j + 1) * k],
            &w[(j + 1) * k..(j + 2) * k],
            &w[(j + 2) * k..(j + 3) * k],
            &w[(j + 3) * k..(j + 4) * k],
        ];
        let mut i = 0;
        while i < m {
            // An odd last row is paired with itself and the duplicate discarded.
            let i1 = (i + 1).min(m - 1);
            let sums = dot4x2_f16(&x[i * k..(i + 1) * k], &x[i1 * k..(i1 + 1) * k], rows);
            for (row, s) in [(i, sums[0]), (i1, sums[1])] {
                let o = &mut out[row * n + j..row * n + j + 4];
                for c in 0..4 {
                    o[c] = s[c] + b[j + c];
                }
            }
            i += 2;
        }
        j += 4;
    }
    for j in j..n {
        let wj: Vec<f32> = w[j * k..(j + 1) * k]
            .iter()
            .map(|&h| half::f16::from_bits(h).to_f32())
            .collect();
        for i in 0..m {
            out[i * n + j] = dot(&x[i * k..(i + 1) * k], &wj) + b[j];
        }
    }
    out
}

/// Dot products of two f32 rows with four f16 weight rows, with F16C + FMA where compiled in.
#[inline]
fn dot4x2_f16(x0: &[f32], x1: &[f32], w: [&[u16]; 4]) -> [[f32; 4]; 2] {
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "f16c",
        target_feature = "fma",
        target_feature = "avx"
    ))]
    {
        // SAFETY: the target features are enabled at compile time (`.cargo/config.toml`), and every
        // load reads 8 elements inside slices of length k, a multiple of 8.
        unsafe {
            use std::arch::x86_64::*;
            let mut acc = [[_mm256_setzero_ps(); 4]; 2];
            for c in 0..x0.len() / 8 {
                let xa = _mm256_loadu_ps(x0.as_ptr().add(c * 8));
                let xb = _mm256_loadu_ps(x1.as_ptr().add(c * 8));
                for r in 0..4 {
                    let wv = _mm256_cvtph_ps(_mm_loadu_si128(
                        w[r].as_ptr().add(c * 8) as *const __m128i
                    ));
                    acc[0][r] = _mm256_fmadd_ps(xa, wv, acc[0][r]);
                    acc[1][r] = _mm256_fmadd_ps(xb, wv, acc[1][r]);
                }
            }
            let sum = |v: __m256| {
                let mut lanes = [0f32; 8];
                _mm256_storeu_ps(lanes.as_mut_ptr(), v);
                lanes.iter().sum::<f32>()
            };
            [
                [
                    sum(acc[0][0]),
                    sum(acc[0][1]),
                    sum(acc[0][2]),
                    sum(acc[0][3]),
                ],
                [
                    sum(acc[1][0]),
                    sum(acc[1][1]),
                    sum(acc[1][2]),
                    sum(acc[1][3]),
                ],
            ]
        }
    }
    #[cfg(not(all(
        target_arch = "x86_64",
        target_feature = "f16c",
        target_feature = "fma",
        target_feature = "avx"
    )))]
    {
        let rows: Vec<Vec<f32>> = w
            .iter()
            .map(|r| {
                r.iter()
                    .map(|&h| half::f16::from_bits(h).to_f32())
                    .collect()
            })
            .collect();
        let mut out = [[0f32; 4]; 2];
        for r in 0..4 {
            out[0][r] = dot(x0, &rows[r]);
            out[1][r] = dot(x1, &rows[r]);
        }
        out
    }
}

#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = a.len() / 8;
    for c in 0..chunks {
        for l in 0..8 {
            acc[l] = a[c * 8 + l].mul_add(b[c * 8 + l], acc[l]);
        }
    }
    let mut s: f32 = acc.iter().sum();
    for i in chunks * 8..a.len() {
        s += a[i] * b[i];
    }
    s
}

fn add_assign(a: &mut [f32], b: &[f32]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x += y;
    }
}

fn softmax_scaled(row: &mut [f32], scale: f32) {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) * scale;
    // Exponentiate first, sum after: a running sum in the same loop would stop vectorisation.
    for v in row.iter_mut() {
        *v = fast_exp(*v * scale - max);
    }
    let inv = 1.0 / row.iter().sum::<f32>();
    row.iter_mut().for_each(|v| *v *= inv);
}

/// Below this many values, element-wise work stays on the calling thread: waking a second
/// thread costs more than it saves (a query's layer norm is a few thousand values).
const PARALLEL_MIN: usize = 64 * 1024;

fn apply_gelu(values: &mut [f32]) {
    if values.len() < PARALLEL_MIN {
        values.iter_mut().for_each(|v| *v = gelu(*v));
    } else {
        values
            .par_chunks_mut(8192)
            .for_each(|c| c.iter_mut().for_each(|v| *v = gelu(*v)));
    }
}

fn layer_norm(x: &mut [f32], h: usize, g: &[f32], b: &[f32], eps: f32) {
    if x.len() < PARALLEL_MIN {
        layer_norm_rows(x, h, g, b, eps);
    } else {
        x.par_chunks_mut(h * 64)
            .for_each(|rows| layer_norm_rows(rows, h, g, b, eps));
    }
}

fn layer_norm_rows(x: &mut [f32], h: usize, g: &[f32], b: &[f32], eps: f32) {
    {
        for row in x.chunks_exact_mut(h) {
            let mean = row.iter().sum::<f32>() / h as f32;
            let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / h as f32;
            let inv = 1.0 / (var + eps).sqrt();
            for i in 0..h {
                row[i] = (row[i] - mean) * inv * g[i] + b[i];
            }
        }
    }
}

/// BERT's exact GELU: 0.5 x (1 + erf(x / sqrt 2)).
#[inline]
fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// erf by Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7, about f32 precision).
#[inline]
fn erf(x: f32) -> f32 {
    let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
    let poly = t
        * (0.254_829_6
            + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152_1 + t * 1.061_405_4))));
    let y = 1.0 - poly * fast_exp(-x * x);
    y.copysign(x)
}

/// e^x for f32 without a libm call, so loops over slices vectorise: 2^(x log2 e) split into an
/// integer power (built in the exponent bits) and 2^f for f in [-0.5, 0.5] by a degree-6 polynomial
/// (relative error about 2e-7). Inputs are clamped to the range where e^x is a normal f32.
#[inline]
fn fast_exp(x: f32) -> f32 {
    let a = x.clamp(-87.0, 88.0) * std::f32::consts::LOG2_E;
    let n = a.round();
    let f = (a - n) * std::f32::consts::LN_2;
    // Taylor series of e^f, |f| <= 0.35.
    let p = 1.0
        + f * (1.0
            + f * (0.5
                + f * (1.0 / 6.0 + f * (1.0 / 24.0 + f * (1.0 / 120.0 + f * (1.0 / 720.0))))));
    f32::from_bits(((n as i32 + 127) as u32) << 23) * p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_exp_matches_exp() {
        for i in -2000..=2000 {
            let x = i as f32 * 0.04;
            let (got, want) = (fast_exp(x), x.exp());
            // Rounding of x * log2(e) grows with |x|: 1e-6 near 0, about 1e-6 to 6e-6 at |x| = 80.
            let tolerance = if x.abs() <= 10.0 { 1e-6 } else { 1e-5 };
            assert!(
                ((got - want) / want).abs() < tolerance,
                "exp({x}) = {got} want {want}"
            );
        }
        assert!(fast_exp(-1000.0) < 1e-37 && fast_exp(-1000.0) >= 0.0);
    }

    #[test]
    fn erf_matches_known_values() {
        for (x, want) in [
            (0.0f32, 0.0f32),
            (0.5, 0.520_499_9),
            (1.0, 0.842_700_8),
            (-2.0, -0.995_322_3),
            (3.5, 0.999_999_26),
        ] {
            assert!(
                (erf(x) - want).abs() < 3e-7,
                "erf({x}) = {} want {want}",
                erf(x)
            );
        }
    }

    #[test]
    fn small_and_gemm_linear_agree() {
        let (k, n) = (16, 12);
        let w: Vec<f32> = (0..n * k)
            .map(|i| ((i * 7 % 13) as f32 - 6.0) / 10.0)
            .collect();
        let b: Vec<f32> = (0..n).map(|i| i as f32 / 10.0).collect();
        for m in [1, 3, SMALL_M + 5] {
            let x: Vec<f32> = (0..m * k)
                .map(|i| ((i * 5 % 11) as f32 - 5.0) / 7.0)
                .collect();
            let mut out = vec![0f32; m * n];
            linear(&x, m, k, &Weights::new(w.clone()), &b, &mut out);
            for i in 0..m {
                for j in 0..n {
                    let want: f32 = (0..k).map(|c| x[i * k + c] * w[j * k + c]).sum::<f32>() + b[j];
                    // The few-rows path reads f16 weights: agreement to f16 rounding.
                    assert!(
                        (out[i * n + j] - want).abs() < 2e-3,
                        "m={m} ({i},{j}): {} vs {want}",
                        out[i * n + j]
                    );
                }
            }
        }
    }
}
