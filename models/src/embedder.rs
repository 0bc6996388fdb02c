//! Sentence embedders: a BERT encoder (`bert.rs`) over tokenizers' ids, mean-pooled over each
//! sequence's tokens and L2-normalised. The trait exists because two models are planned (MiniLM for
//! English, e5 for the multilingual corpus); both are BERT-shaped and share `BertEmbedder`.

use std::path::Path;

use candle_core::Device;
use tokenizers::{Tokenizer, TruncationParams};

use crate::bert::{BertEncoder, BertShape};
use crate::delta::EncoderDelta;
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
/// Tokens per forward pass: enough rows to keep the matmuls efficient, bounded memory. With the packed
/// kernel 2,048 embeds as fast as 8,192 did (`scanaid bench embed`: 43-47 / 22-23 passages/s at ~128 / ~256
/// tokens), and the activation buffers the encoder keeps between calls stay near 28 MB (MiniLM) instead of 113.
pub const BATCH_TOKENS: usize = 2048;

#[derive(serde::Deserialize)]
struct HfBertConfig {
    hidden_size: usize,
    num_attention_heads: usize,
    num_hidden_layers: usize,
    intermediate_size: usize,
    #[serde(default = "default_eps")]
    layer_norm_eps: f64,
    max_position_embeddings: usize,
    hidden_act: String,
}

fn default_eps() -> f64 {
    1e-12
}

pub struct BertEmbedder {
    encoder: BertEncoder,
    tokenizer: Tokenizer,
    model_id: String,
    query_prefix: &'static str,
    passage_prefix: &'static str,
}

impl BertEmbedder {
    /// Loads a verified model directory (model.safetensors, config.json, tokenizer.json).
    pub fn load(dir: &Path, spec: &ModelSpec) -> Result<Self> {
        Self::load_tuned(dir, spec, None)
    }

    /// Loads a verified model directory with a tuned encoder delta merged into its weights (`delta.rs`);
    /// the model id then names the delta too.
    pub fn load_tuned(dir: &Path, spec: &ModelSpec, delta: Option<&EncoderDelta>) -> Result<Self> {
        verify_model(dir, spec)?;
        let config_path = dir.join("config.json");
        let config_text = std::fs::read_to_string(&config_path).map_err(io_err(&config_path))?;
        let config: HfBertConfig =
            serde_json::from_str(&config_text).map_err(|e| ModelError::Config {
                path: config_path.clone(),
                message: e.to_string(),
            })?;
        if config.hidden_act != "gelu" {
            return Err(ModelError::Config {
                path: config_path,
                message: format!(
                    "activation {:?} is not supported (gelu only)",
                    config.hidden_act
                ),
            });
        }
        let shape = BertShape {
            hidden: config.hidden_size,
            heads: config.num_attention_heads,
            layers: config.num_hidden_layers,
            intermediate: config.intermediate_size,
            layer_norm_eps: config.layer_norm_eps as f32,
            max_positions: config.max_position_embeddings,
        };
        let weights = dir.join("model.safetensors");
        let mut tensors = candle_core::safetensors::load(&weights, &Device::Cpu)?;
        let mut model_id = spec.name.to_string();
        if let Some(delta) = delta {
            delta.apply(&mut tensors)?;
            model_id = format!("{model_id}+{}", delta.id());
        }
        let encoder = BertEncoder::from_tensors(&tensors, shape)?;
        let tokenizer = load_tokenizer(&dir.join("tokenizer.json"))?;
        Ok(Self {
            encoder,
            tokenizer,
            model_id,
            query_prefix: "",
            passage_prefix: "",
        })
    }

    /// Loads multilingual-e5-small from a verified directory holding its E5S1 file. Queries and
    /// passages get e5's `query: ` and `passage: ` prefixes.
    pub fn load_e5s1(dir: &Path, spec: &ModelSpec) -> Result<Self> {
        verify_model(dir, spec)?;
        let file = spec
            .files
            .first()
            .map(|f| dir.join(f.name))
            .ok_or_else(|| ModelError::Config {
                path: dir.to_path_buf(),
                message: "the model spec names no file".to_string(),
            })?;
        let loaded = crate::e5s1::load(&file)?;
        let encoder = BertEncoder::from_tensors(&loaded.tensors, loaded.shape)?;
        let mut tokenizer = loaded.tokenizer;
        let tok_err = |message: String| ModelError::Tokenizer {
            path: file.clone(),
            message,
        };
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                ..Default::default()
            }))
            .map_err(|e| tok_err(e.to_string()))?;
        tokenizer.with_padding(None);
        Ok(Self {
            encoder,
            tokenizer,
            model_id: spec.name.to_string(),
            query_prefix: "query: ",
            passage_prefix: "passage: ",
        })
    }

    /// Token ids of each text (special tokens added, truncated to the model's window).
    pub fn tokenize(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>> {
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| ModelError::Encode(e.to_string()))?;
        Ok(encodings
            .into_iter()
            .map(|e| e.get_ids().to_vec())
            .collect())
    }

    /// Embeds texts in batches of about `BATCH_TOKENS` tokens, returned in input order.
    fn embed(&self, texts: &[&str], prefix: &str) -> Result<Vec<Vec<f32>>> {
        let prefixed: Vec<String> = texts.iter().map(|t| format!("{prefix}{t}")).collect();
        let refs: Vec<&str> = prefixed.iter().map(String::as_str).collect();
        let ids = self.tokenize(&refs)?;
        let mut out = Vec::with_capacity(texts.len());
        let mut start = 0;
        while start < ids.len() {
            let mut end = start;
            let mut tokens = 0;
            while end < ids.len() && (end == start || tokens + ids[end].len() <= BATCH_TOKENS) {
                tokens += ids[end].len();
                end += 1;
            }
            out.extend(self.encoder.embed(&ids[start..end]));
            start = end;
        }
        Ok(out)
    }
}

impl Embedder for BertEmbedder {
    fn model_id(&self) -> &str {
        &self.model_id
    }
    fn dim(&self) -> usize {
        self.encoder.hidden()
    }
    fn embed_queries(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        self.embed(texts, self.query_prefix)
    }
    fn embed_passages(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        self.embed(texts, self.passage_prefix)
    }
}

/// The shipped tokenizer.json pads and truncates at 128; we truncate at the model's 256 and do not
/// pad at all (the encoder packs sequences end to end; see ../shared/MODELS.md).
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
    tokenizer.with_padding(None);
    Ok(tokenizer)
}

/// Cosine of two unit vectors.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
