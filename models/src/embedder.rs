//! Sentence embedders: a BERT encoder run with candle, mean-pooled over the attention mask and
//! L2-normalised. The trait exists because two models are planned (MiniLM for English, e5 for the
//! multilingual corpus); both are BERT-shaped and share `BertEmbedder`.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use crate::error::{io_err, ModelError, Result};
use crate::fetch::{verify_model, ModelSpec};

/// Turns text into unit-length vectors; queries and passages may be encoded differently (e5 prefixes).
pub trait Embedder: Send + Sync {
    /// The model's identity, stored with an index so it is never queried with another model.
    fn model_id(&self) -> &str;
    fn dim(&self) -> usize;
    fn embed_queries(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>>;
    fn embed_passages(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>>;
}

/// Longest input the model is trained for (sentence-transformers' `max_seq_length` for MiniLM).
pub const MAX_TOKENS: usize = 256;
/// Passages per forward pass: large enough to keep the matmuls efficient, small enough to bound padding.
pub const BATCH_SIZE: usize = 32;

pub struct BertEmbedder {
    model: BertModel,
    tokenizer: Tokenizer,
    model_id: String,
    dim: usize,
    query_prefix: &'static str,
    passage_prefix: &'static str,
}

impl BertEmbedder {
    /// Loads a verified model directory (model.safetensors, config.json, tokenizer.json).
    pub fn load(dir: &Path, spec: &ModelSpec) -> Result<Self> {
        verify_model(dir, spec)?;
        let config_path = dir.join("config.json");
        let config_text = std::fs::read_to_string(&config_path).map_err(io_err(&config_path))?;
        let config: Config =
            serde_json::from_str(&config_text).map_err(|e| ModelError::Config {
                path: config_path.clone(),
                message: e.to_string(),
            })?;
        let dim = config.hidden_size;
        let weights = dir.join("model.safetensors");
        // SAFETY (of the mmap): the file was just verified and the cache is ours; nothing rewrites it
        // in place (fetching writes a new directory and renames it).
        let vb =
            unsafe { VarBuilder::from_mmaped_safetensors(&[weights], DType::F32, &Device::Cpu)? };
        let model = BertModel::load(vb, &config)?;
        let tokenizer = load_tokenizer(&dir.join("tokenizer.json"))?;
        Ok(Self {
            model,
            tokenizer,
            model_id: spec.name.to_string(),
            dim,
            query_prefix: "",
            passage_prefix: "",
        })
    }

    /// Embeds texts in length-sorted batches (less padding) and returns vectors in input order.
    fn embed(&self, texts: &[&str], prefix: &str) -> Result<Vec<Vec<f32>>> {
        let prefixed: Vec<String> = texts.iter().map(|t| format!("{prefix}{t}")).collect();
        let mut order: Vec<usize> = (0..texts.len()).collect();
        // Sort by byte length as a cheap proxy for token length.
        order.sort_by_key(|&i| std::cmp::Reverse(prefixed[i].len()));
        let mut out = vec![Vec::new(); texts.len()];
        for batch in order.chunks(BATCH_SIZE) {
            let inputs: Vec<&str> = batch.iter().map(|&i| prefixed[i].as_str()).collect();
            let vectors = self.embed_batch(&inputs)?;
            for (&i, v) in batch.iter().zip(vectors) {
                out[i] = v;
            }
        }
        Ok(out)
    }

    fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| ModelError::Encode(e.to_string()))?;
        let n = encodings.len();
        let len = encodings[0].get_ids().len();
        let mut ids = Vec::with_capacity(n * len);
        let mut mask = Vec::with_capacity(n * len);
        let mut types = Vec::with_capacity(n * len);
        for e in &encodings {
            ids.extend_from_slice(e.get_ids());
            mask.extend_from_slice(e.get_attention_mask());
            types.extend_from_slice(e.get_type_ids());
        }
        let device = &self.model.device;
        let ids = Tensor::from_vec(ids, (n, len), device)?;
        let types = Tensor::from_vec(types, (n, len), device)?;
        let mask = Tensor::from_vec(mask, (n, len), device)?;
        let hidden = self.model.forward(&ids, &types, Some(&mask))?; // (n, len, dim)
        let pooled = mean_pool(&hidden, &mask)?;
        let normalised = l2_normalise(&pooled)?;
        Ok(normalised.to_vec2::<f32>()?)
    }
}

impl Embedder for BertEmbedder {
    fn model_id(&self) -> &str {
        &self.model_id
    }
    fn dim(&self) -> usize {
        self.dim
    }
    fn embed_queries(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        self.embed(texts, self.query_prefix)
    }
    fn embed_passages(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        self.embed(texts, self.passage_prefix)
    }
}

/// The shipped tokenizer.json pads and truncates at 128; we pad to the longest in the batch and
/// truncate at the model's 256 (see ../shared/MODELS.md).
fn load_tokenizer(path: &Path) -> Result<Tokenizer> {
    let tok_err = |message: String| ModelError::Tokenizer {
        path: path.to_path_buf(),
        message,
    };
    let mut tokenizer = Tokenizer::from_file(path).map_err(|e| tok_err(e.to_string()))?;
    tokenizer
        .with_truncation(Some(TruncationParams {
            max_length: MAX_TOKENS,
            ..Default::default()
        }))
        .map_err(|e| tok_err(e.to_string()))?;
    tokenizer.with_padding(Some(PaddingParams {
        strategy: PaddingStrategy::BatchLongest,
        ..Default::default()
    }));
    Ok(tokenizer)
}

/// Mean of the token vectors where the attention mask is 1.
fn mean_pool(hidden: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?; // (n, len, 1)
    let summed = hidden.broadcast_mul(&mask)?.sum(1)?; // (n, dim)
    let counts = mask.sum(1)?.clamp(1e-9, f64::MAX)?; // (n, 1)
    Ok(summed.broadcast_div(&counts)?)
}

fn l2_normalise(x: &Tensor) -> Result<Tensor> {
    let norms = x.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
    Ok(x.broadcast_div(&norms)?)
}

/// Cosine of two unit vectors.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
