//! A BERT encoder forward pass for sentence embedding on CPU. Why not candle-transformers'
//! `BertModel`: measured here, it spends about a third of a short query's time re-packing weight
//! matrices inside gemm and most of the rest in thread wake-ups of a dozen tiny per-head matmuls,
//! and it needs padded batches. This forward
//! - runs every linear layer over all tokens of a batch at once with no padding (sequences are packed
//!   end to end; attention is computed per sequence over its own length);
//! - fuses the Q, K and V projections into one matmul;
//! - packs each weight matrix once, at load, as f16 for a register-tiled kernel (`packed.rs`);
//! - computes a short sequence's attention with loops that vectorise over keys, and long ones in
//!   AVX-512 registers (`attention_avx512.rs`) or, without AVX-512, with gemm; element-wise work
//!   (GELU, softmax) uses a polynomial exp the compiler vectorises.
//!
//! Its output matches candle's `BertModel` to f16 weight rounding, within 2e-4 per component of the
//! unit vector (tested in tests/reference_cosine.rs).

use std::collections::HashMap;

use candle_core::Tensor;
use rayon::prelude::*;

#[cfg(target_arch = "x86_64")]
use crate::attention_avx512;
use crate::error::{ModelError, Result};
#[cfg(target_arch = "x86_64")]
use crate::int16::{self, PackedI16};
use crate::packed::{self, Packed, SendPtr, F16};

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

/// A linear layer: its weights packed once, and its bias.
///
/// Where the CPU has AVX512-VNNI the weights are kept in 16-bit integers (`int16.rs`: twice the f32
/// arithmetic rate, for queries and batches alike: on scifact, interleaved runs, a query's
/// embedding took 3.75 / 4.42 / 4.98 ms against 5.18 / 5.89 / 5.57 ms with f16 weights, same
/// nDCG@10). Elsewhere they are f16: reading the weights is most of a query's cost, and for batches
/// f16 panels were measured about as fast as f32 ones (scifact windows, interleaved runs: 53.5 /
/// 59.2 against 53.1 / 55.4 windows/s; the kernel is at the cores' FMA peak there), so one f16
/// copy serves both. Vectors stay within 2e-4 of candle's f32 `BertModel` with f16 weights and
/// 1e-3 with int16 (test `the_packed_forward_matches_candle_bert_model`).
struct Linear {
    weights: LinearWeights,
    bias: Vec<f32>,
}

enum LinearWeights {
    F16(Packed<F16>),
    #[cfg(target_arch = "x86_64")]
    Int16(PackedI16),
}

/// Which arithmetic the linear layers (queries and batches) run in on this CPU, for benchmarks and
/// tests to say (and bound their tolerance by): `int16` where AVX512-VNNI exists, else f32 FMA on f16 weights.
pub fn linear_arithmetic() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    if let Some(kernel) = int16::kernel() {
        return kernel.name();
    }
    match packed::Kernel::best() {
        packed::Kernel::Avx512 => "f32 on f16 weights (AVX-512)",
        packed::Kernel::Avx2 => "f32 on f16 weights (AVX2)",
    }
}

impl Linear {
    /// `w` stored (n, k) row-major as in the checkpoint, `bias` of length n.
    fn new(w: Vec<f32>, bias: Vec<f32>, k: usize) -> Self {
        let n = bias.len();
        #[cfg(target_arch = "x86_64")]
        if int16::kernel().is_some() {
            return Self {
                weights: LinearWeights::Int16(PackedI16::pack(&w, n, k)),
                bias,
            };
        }
        Self {
            weights: LinearWeights::F16(Packed::pack(&w, n, k)),
            bias,
        }
    }

    /// Output width.
    fn n(&self) -> usize {
        self.bias.len()
    }

    /// out (m x n) = x (m x k) times the weights, plus the bias.
    fn apply(&self, x: &[f32], m: usize, out: &mut [f32]) {
        match &self.weights {
            LinearWeights::F16(weights) => packed::linear(x, m, weights, &self.bias, out),
            #[cfg(target_arch = "x86_64")]
            LinearWeights::Int16(weights) => int16::linear(x, m, weights, &self.bias, out),
        }
    }
}

struct Layer {
    qkv: Linear, // (3 * hidden, hidden)
    out: Linear, // (hidden, hidden)
    ln1_g: Vec<f32>,
    ln1_b: Vec<f32>,
    ff1: Linear, // (intermediate, hidden)
    ff2: Linear, // (hidden, intermediate)
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
    /// Activation buffers kept between calls: a batch's are tens of MB, and allocating them afresh
    /// each time cost about 8% of corpus embedding in page faults. One set is kept; a concurrent
    /// call allocates its own.
    scratch: std::sync::Mutex<Option<Scratch>>,
}

#[derive(Default)]
struct Scratch {
    x: Vec<f32>,
    qkv: Vec<f32>,
    ctx: Vec<f32>,
    proj: Vec<f32>,
    ff: Vec<f32>,
}

/// `buffer` resized to `len`; every caller overwrites what it reads, so old contents may stay.
fn sized(buffer: &mut Vec<f32>, len: usize) -> &mut [f32] {
    buffer.resize(len, 0.0);
    &mut buffer[..len]
}

thread_local! {
    /// A thread's attention scores (len x len), kept between heads and calls: a fresh 256 KB
    /// buffer per head and layer page-faulted (`clear_page` was 4% of a batch's time).
    static ATTENTION_SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    /// A thread's transposed keys (head width x len) for the AVX-512 attention, kept likewise.
    static KEYS_SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `SCANAID_ATTENTION=portable` runs long sequences' attention on gemm even where AVX-512 exists:
/// to compare the two on one machine in one run.
fn portable_attention_asked() -> bool {
    static ASKED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ASKED.get_or_init(|| std::env::var("SCANAID_ATTENTION").is_ok_and(|v| v == "portable"))
}

/// Up to this sequence length attention is computed with plain loops instead of gemm.
const SMALL_ATTENTION: usize = 48;
/// From this many tokens in a batch, attention heads are shared between threads: below it a
/// layer's attention costs less than waking the other thread.
const PARALLEL_ATTENTION: usize = 16;

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
            let (h, inter) = (shape.hidden, shape.intermediate);
            let linear = |w: Vec<f32>, b: Vec<f32>, k: usize| -> Result<Linear> {
                if w.len() != b.len() * k {
                    return Err(ModelError::Encode(
                        "model weights do not match the configured BERT shape".into(),
                    ));
                }
                Ok(Linear::new(w, b, k))
            };
            layers.push(Layer {
                qkv: linear(qkv_w, qkv_b, h)?,
                out: linear(
                    get(&format!("{p}.attention.output.dense.weight"))?,
                    get(&format!("{p}.attention.output.dense.bias"))?,
                    h,
                )?,
                ln1_g,
                ln1_b,
                ff1: linear(
                    get(&format!("{p}.intermediate.dense.weight"))?,
                    get(&format!("{p}.intermediate.dense.bias"))?,
                    h,
                )?,
                ff2: linear(
                    get(&format!("{p}.output.dense.weight"))?,
                    get(&format!("{p}.output.dense.bias"))?,
                    inter,
                )?,
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
            scratch: std::sync::Mutex::new(None),
        };
        let h = shape.hidden;
        if !h.is_multiple_of(shape.heads)
            || !h.is_multiple_of(8)
            || !shape.intermediate.is_multiple_of(8)
            || encoder.layers[0].ff1.n() != shape.intermediate
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
        let mut scratch = self
            .scratch
            .lock()
            .ok()
            .and_then(|mut kept| kept.take())
            .unwrap_or_default();
        let Scratch {
            x,
            qkv,
            ctx,
            proj,
            ff,
        } = &mut scratch;
        let x = sized(x, total * h);
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
            x,
            h,
            &self.emb_ln_g,
            &self.emb_ln_b,
            self.shape.layer_norm_eps,
        );

        let qkv = sized(qkv, total * 3 * h);
        let ctx = sized(ctx, total * h);
        let proj = sized(proj, total * h);
        let ff = sized(ff, total * self.shape.intermediate);
        for layer in &self.layers {
            layer.qkv.apply(x, total, qkv);
            self.attention(qkv, &offsets, ctx);
            layer.out.apply(ctx, total, proj);
            add_assign(x, proj);
            layer_norm(x, h, &layer.ln1_g, &layer.ln1_b, self.shape.layer_norm_eps);
            layer.ff1.apply(x, total, ff);
            apply_gelu(ff);
            layer.ff2.apply(ff, total, proj);
            add_assign(x, proj);
            layer_norm(x, h, &layer.ln2_g, &layer.ln2_b, self.shape.layer_norm_eps);
        }
        // Mean pooling over each sequence's tokens, then L2 normalisation.
        let vectors = (0..sequences.len())
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
            .collect();
        if let Ok(mut kept) = self.scratch.lock() {
            *kept = Some(scratch);
        }
        vectors
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
        #[cfg(target_arch = "x86_64")]
        let fast_attention = hd == attention_avx512::HEAD
            && attention_avx512::runs_here()
            && !portable_attention_asked();
        let run = |&(s, head): &(usize, usize)| {
            let (start, len) = (offsets[s], offsets[s + 1] - offsets[s]);
            if len == 0 {
                return;
            }
            let q0 = start * 3 * h + head * hd;
            let k0 = q0 + h;
            let v0 = q0 + 2 * h;
            #[cfg(target_arch = "x86_64")]
            if fast_attention && len > SMALL_ATTENTION {
                let mut kt = KEYS_SCRATCH.with(|kept| std::mem::take(&mut *kept.borrow_mut()));
                let mut scores =
                    ATTENTION_SCRATCH.with(|kept| std::mem::take(&mut *kept.borrow_mut()));
                let at = attention_avx512::HeadAt {
                    qkv: qkv.as_ptr(),
                    stride: 3 * h,
                    q0,
                    k0,
                    v0,
                    len,
                    // SAFETY: rows start..start+len of ctx, inside it.
                    out: unsafe { ctx_ptr.get().add(start * h + head * hd) },
                    out_stride: h,
                };
                // SAFETY: checked `runs_here`; task (s, head) alone writes its rows' columns
                // head*hd..(head+1)*hd of ctx, and qkv holds every row it reads.
                unsafe { attention_avx512::head(&at, scale, &mut kt, &mut scores) };
                KEYS_SCRATCH.with(|slot| *slot.borrow_mut() = kt);
                ATTENTION_SCRATCH.with(|slot| *slot.borrow_mut() = scores);
                return;
            }
            let mut kept = ATTENTION_SCRATCH.with(|kept| std::mem::take(&mut *kept.borrow_mut()));
            let scores = sized(&mut kept, len * len);
            if len <= SMALL_ATTENTION {
                // The rows below accumulate, and the kept buffer holds an earlier head's scores.
                scores.fill(0.0);
                // K transposed (hd x len), so each score row is hd broadcast-FMAs along the row:
                // vectorised over keys, where a dot product per (query, key) pair needs a
                // horizontal sum of 32 values each time.
                let mut kt = vec![0f32; hd * len];
                for j in 0..len {
                    let k = &qkv[k0 + j * 3 * h..k0 + j * 3 * h + hd];
                    for (c, &kc) in k.iter().enumerate() {
                        kt[c * len + j] = kc;
                    }
                }
                for (i, row) in scores.chunks_exact_mut(len).enumerate() {
                    let q = &qkv[q0 + i * 3 * h..q0 + i * 3 * h + hd];
                    for (&qc, kt_row) in q.iter().zip(kt.chunks_exact(len)) {
                        for (r, &k) in row.iter_mut().zip(kt_row) {
                            *r = qc.mul_add(k, *r);
                        }
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
                    for (i, row) in scores.chunks_exact(len).enumerate() {
                        let dst = std::slice::from_raw_parts_mut(out.add(i * h), hd);
                        dst.iter_mut().for_each(|d| *d = 0.0);
                        for (j, &p) in row.iter().enumerate() {
                            let v = &qkv[v0 + j * 3 * h..v0 + j * 3 * h + hd];
                            for (d, &vc) in dst.iter_mut().zip(v) {
                                *d = p.mul_add(vc, *d);
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
            ATTENTION_SCRATCH.with(|slot| *slot.borrow_mut() = kept);
        };
        if tasks.len() > 1 && offsets[offsets.len() - 1] >= PARALLEL_ATTENTION {
            tasks.par_iter().for_each(run);
        } else {
            tasks.iter().for_each(run);
        }
    }
}

fn add_assign(a: &mut [f32], b: &[f32]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x += y;
    }
}

fn softmax_scaled(row: &mut [f32], scale: f32) {
    let max = max_of(row) * scale;
    // Exponentiate first, sum after: a running sum in the same loop would stop vectorisation.
    for v in row.iter_mut() {
        *v = fast_exp(*v * scale - max);
    }
    let inv = 1.0 / sum_of(row);
    row.iter_mut().for_each(|v| *v *= inv);
}

/// Independent partial results per reduction: the compiler keeps float reductions in source
/// order (addition does not associate), so `iter().sum()` is one serial chain of scalar adds,
/// each waiting for the last. Sixteen running lanes vectorise and overlap. `perf annotate` showed
/// the serial max and sum of softmax as about half of attention's own (non-matmul) time.
const LANES: usize = 16;

/// The sum of `values`, accumulated in `LANES` interleaved partial sums.
fn sum_of(values: &[f32]) -> f32 {
    lane_sum(values, |v| v)
}

/// The sum of `term(v)` over `values`, in `LANES` interleaved partial sums.
#[inline(always)]
fn lane_sum(values: &[f32], term: impl Fn(f32) -> f32) -> f32 {
    let mut lanes = [0f32; LANES];
    let chunks = values.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane += term(v);
        }
    }
    lanes.iter().sum::<f32>() + tail.iter().map(|&v| term(v)).sum::<f32>()
}

/// The largest of `values` (negative infinity for none), by `LANES` running maxima.
fn max_of(values: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let chunks = values.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane = lane.max(v);
        }
    }
    lanes
        .iter()
        .chain(tail)
        .fold(f32::NEG_INFINITY, |m, &v| m.max(v))
}

/// The sum of squared distances of `values` from `mean`, in `LANES` partial sums.
fn squared_deviation_of(values: &[f32], mean: f32) -> f32 {
    lane_sum(values, |v| (v - mean) * (v - mean))
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
            let mean = sum_of(row) / h as f32;
            let var = squared_deviation_of(row, mean) / h as f32;
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
    // Adding 1.5 * 2^23 rounds to an integer (ties to even) and leaves it in the low mantissa
    // bits: the power of two is then built with integer arithmetic that vectorises, where
    // `round()` is a libm call and `as i32` a scalar, saturating conversion per value.
    const SHIFT: f32 = 12_582_912.0;
    let a = x.clamp(-87.0, 88.0) * std::f32::consts::LOG2_E;
    let t = a + SHIFT;
    let n = t - SHIFT;
    let f = (a - n) * std::f32::consts::LN_2;
    // Taylor series of e^f, |f| <= 0.35.
    let p = 1.0
        + f * (1.0
            + f * (0.5
                + f * (1.0 / 6.0 + f * (1.0 / 24.0 + f * (1.0 / 120.0 + f * (1.0 / 720.0))))));
    // |n| <= 127, so the difference of the bit patterns is n exactly; n + 127 is a normal exponent.
    let exponent = (t.to_bits().wrapping_sub(SHIFT.to_bits()) as i32).wrapping_add(127) as u32;
    f32::from_bits(exponent << 23) * p
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
    fn lane_reductions_match_the_plain_ones() {
        assert_eq!(sum_of(&[]), 0.0);
        assert_eq!(max_of(&[]), f32::NEG_INFINITY);
        for len in [1usize, 7, 15, 16, 17, 31, 32, 33, 130, 257] {
            let values: Vec<f32> = (0..len)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.173)
                .collect();
            let plain_sum: f64 = values.iter().map(|&v| v as f64).sum();
            assert!(
                (sum_of(&values) as f64 - plain_sum).abs() < 1e-3,
                "sum, len {len}"
            );
            let plain_max = values.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            assert_eq!(max_of(&values), plain_max, "max, len {len}");
            let mean = (plain_sum / len as f64) as f32;
            let plain_sq: f64 = values.iter().map(|&v| ((v - mean) as f64).powi(2)).sum();
            let got = squared_deviation_of(&values, mean) as f64;
            assert!(
                (got - plain_sq).abs() < 1e-3 * plain_sq.max(1.0),
                "squares, len {len}"
            );
        }
        // The largest value anywhere, the tail included.
        let mut v = vec![0f32; 35];
        v[34] = 9.0;
        assert_eq!(max_of(&v), 9.0);
        v[3] = 11.0;
        assert_eq!(max_of(&v), 11.0);
    }

    #[test]
    fn erf_matches_known_values() {
        for (x, want) in [
            (0.0f32, 0.0f32),
            (0.5, 0.520_499_9),
            (1.0, 0.842_700_8),
            (-2.0, -0.995_322_3),
            (3.5, 0.999_999_3),
        ] {
            assert!(
                (erf(x) - want).abs() < 3e-7,
                "erf({x}) = {} want {want}",
                erf(x)
            );
        }
    }
}
