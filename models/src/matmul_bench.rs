//! The candle f32 matmul rate on this machine: the bound that embedding throughput is compared to.

use std::time::Instant;

use candle_core::{Device, Tensor};

use crate::error::Result;

/// GFLOP/s of a square f32 matmul of side `n`, best of `repeats` runs after one warm-up.
pub fn matmul_gflops(n: usize, repeats: usize) -> Result<f64> {
    let a = Tensor::randn(0f32, 1.0, (n, n), &Device::Cpu)?;
    let b = Tensor::randn(0f32, 1.0, (n, n), &Device::Cpu)?;
    let _ = a.matmul(&b)?;
    let mut best = f64::MAX;
    for _ in 0..repeats.max(1) {
        let start = Instant::now();
        let c = a.matmul(&b)?;
        // Touch the result so the work is not optimised away.
        let _ = c.get(0)?;
        best = best.min(start.elapsed().as_secs_f64());
    }
    Ok(2.0 * (n as f64).powi(3) / best / 1e9)
}

/// GFLOP/s of a BERT-shaped linear layer: (tokens x k) times (k x n), the shapes the embedder runs.
pub fn linear_gflops(tokens: usize, k: usize, n: usize, repeats: usize) -> Result<f64> {
    let x = Tensor::randn(0f32, 1.0, (tokens, k), &Device::Cpu)?;
    let w = Tensor::randn(0f32, 1.0, (n, k), &Device::Cpu)?;
    let wt = w.t()?;
    let _ = x.matmul(&wt)?;
    let mut best = f64::MAX;
    for _ in 0..repeats.max(1) {
        let start = Instant::now();
        let c = x.matmul(&wt)?;
        let _ = c.get(0)?;
        best = best.min(start.elapsed().as_secs_f64());
    }
    Ok(2.0 * tokens as f64 * k as f64 * n as f64 / best / 1e9)
}
