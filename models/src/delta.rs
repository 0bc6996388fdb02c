//! A tuned encoder kept as a small 4-bit delta from the base model's weights, merged into them at load.
//!
//! Why a delta: the base weights come from a registry package pinned by sha256 (`fetch.rs`) and are
//! 90 MB; a fine-tuned copy cannot be fetched and is too big to keep in the repository. The change
//! fine-tuning makes to the encoder's matrices quantises to 4 bits per number (groups of 32 inputs
//! sharing one f16 scale) and then moves the sentence vectors by at most 2.4e-4 per component
//! (measured on 104 scifact passages), less than the int16 arithmetic the encoder runs with; the file
//! is about 6 MB.
//! Merging happens before the weights are packed for the kernels, so queries cost nothing more.
//!
//! The layout (written by `evals/experiments/finetune_minilm.py --save-delta`): a safetensors file
//! whose metadata has `format = scanaid-delta-q4`, holding for each changed base matrix `NAME`
//! (shape rows x cols) `NAME.delta_q4` (u8, rows x cols/2: two values a byte, the even column in the
//! low nibble, each stored as q + 8 with q in -7..=7) and `NAME.delta_scale` (f16, rows x cols/32);
//! and for each changed vector (a bias, a layer norm) `NAME.delta` (f16, its full length).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use half::f16;
use safetensors::tensor::Dtype;
use safetensors::SafeTensors;
use sha2::{Digest, Sha256};

use crate::error::{io_err, ModelError, Result};

/// all-MiniLM-L6-v2's encoder fine-tuned on scifact's train split: what `--embedding-model minilm`
/// (and `auto` for English manuals) runs. How it was made and what it does on every evaluation set:
/// README, "Tuned MiniLM".
pub const MINILM_TUNED: BuiltInDelta = BuiltInDelta {
    file: "models/tuned/all-MiniLM-L6-v2.scifact-train.delta",
    bytes: include_bytes!("../tuned/all-MiniLM-L6-v2.scifact-train.delta"),
    sha256: "157b6d3e1475a092465c669e06ccdfe26f7a0a8bb6a6e923866628755e48377c",
};

/// A delta compiled into the binary, pinned by sha256 like the fetched weights.
#[derive(Clone, Copy)]
pub struct BuiltInDelta {
    pub file: &'static str,
    pub bytes: &'static [u8],
    pub sha256: &'static str,
}

impl BuiltInDelta {
    /// Verifies the checksum and parses the delta.
    pub fn load(&self) -> Result<EncoderDelta> {
        let actual = hex::encode(Sha256::digest(self.bytes));
        if actual != self.sha256 {
            return Err(ModelError::Delta {
                origin: self.file.to_string(),
                message: format!(
                    "fails its checksum: expected sha256 {}, found {actual} (the file changed without its pin in delta.rs)",
                    self.sha256
                ),
            });
        }
        EncoderDelta::from_bytes(self.bytes, self.file)
    }
}

/// The `format` a delta file's metadata must name.
pub const DELTA_FORMAT: &str = "scanaid-delta-q4";
/// Inputs of a row that share one scale.
const GROUP: usize = 32;

/// A parsed, validated delta: the f32 change for each base tensor it names.
pub struct EncoderDelta {
    /// Where it came from, for error messages (a path, or `built-in`).
    origin: String,
    sha256: String,
    changes: Vec<(String, Vec<usize>, Vec<f32>)>,
}

impl EncoderDelta {
    /// Reads a delta file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(io_err(path))?;
        Self::from_bytes(&bytes, &path.display().to_string())
    }

    /// Parses a delta held in memory; `origin` names it in errors.
    pub fn from_bytes(bytes: &[u8], origin: &str) -> Result<Self> {
        let bad = |message: String| ModelError::Delta {
            origin: origin.to_string(),
            message,
        };
        let (_, metadata) = SafeTensors::read_metadata(bytes)
            .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
        let format = metadata
            .metadata()
            .as_ref()
            .and_then(|m| m.get("format"))
            .cloned()
            .unwrap_or_default();
        if format != DELTA_FORMAT {
            return Err(bad(format!(
                "its metadata names format {format:?}, expected {DELTA_FORMAT:?}"
            )));
        }
        let file = SafeTensors::deserialize(bytes).map_err(|e| bad(e.to_string()))?;
        let mut names: Vec<String> = file.names().into_iter().map(str::to_string).collect();
        names.sort();
        let mut changes: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
        for name in &names {
            if let Some(base) = name.strip_suffix(".delta") {
                let view = file.tensor(name).map_err(|e| bad(e.to_string()))?;
                let values = f16_values(view.dtype(), view.data())
                    .ok_or_else(|| bad(format!("{name} is {:?}, expected F16", view.dtype())))?;
                changes.push((base.to_string(), view.shape().to_vec(), values));
            } else if let Some(base) = name.strip_suffix(".delta_q4") {
                let scale_name = format!("{base}.delta_scale");
                let q4 = file.tensor(name).map_err(|e| bad(e.to_string()))?;
                let scale = file
                    .tensor(&scale_name)
                    .map_err(|_| bad(format!("{name} has no {scale_name}")))?;
                let (rows, cols) = match q4.shape() {
                    [rows, half_cols] if q4.dtype() == Dtype::U8 && *rows > 0 && *half_cols > 0 => {
                        (
                            *rows,
                            half_cols
                                .checked_mul(2)
                                .ok_or_else(|| bad(format!("{name} is too large")))?,
                        )
                    }
                    shape => {
                        return Err(bad(format!(
                            "{name} is {:?} {shape:?}, expected a non-empty U8 matrix",
                            q4.dtype()
                        )))
                    }
                };
                if cols % GROUP != 0 {
                    return Err(bad(format!(
                        "{name} has {cols} columns, not a multiple of {GROUP}"
                    )));
                }
                if scale.shape() != [rows, cols / GROUP] {
                    return Err(bad(format!(
                        "{scale_name} has shape {:?}, expected [{rows}, {}]",
                        scale.shape(),
                        cols / GROUP
                    )));
                }
                let scales = f16_values(scale.dtype(), scale.data()).ok_or_else(|| {
                    bad(format!("{scale_name} is {:?}, expected F16", scale.dtype()))
                })?;
                let values = dequantize(q4.data(), &scales, rows, cols);
                changes.push((base.to_string(), vec![rows, cols], values));
            } else if name.ends_with(".delta_scale") {
                continue;
            } else {
                return Err(bad(format!(
                    "tensor {name} is not a delta (names end in .delta, .delta_q4 or .delta_scale)"
                )));
            }
        }
        if changes.is_empty() {
            return Err(bad("it holds no deltas".to_string()));
        }
        let mut seen = std::collections::HashSet::new();
        for (name, _, values) in &changes {
            if !seen.insert(name.as_str()) {
                return Err(bad(format!("{name} has two deltas (.delta and .delta_q4)")));
            }
            // A NaN here would not fail anything downstream: it would quietly fill an index with NaN vectors.
            if values.iter().any(|v| !v.is_finite()) {
                return Err(bad(format!(
                    "the delta for {name} holds a value that is not finite"
                )));
            }
        }
        Ok(Self {
            origin: origin.to_string(),
            sha256: hex::encode(Sha256::digest(bytes)),
            changes,
        })
    }

    /// How the delta appears in a model id: indexes built with one delta are never searched with another.
    pub fn id(&self) -> String {
        format!("delta-{}", &self.sha256[..16])
    }

    /// Adds the delta to the base tensors. Every tensor it names must exist with the same shape.
    pub fn apply(&self, tensors: &mut HashMap<String, Tensor>) -> Result<()> {
        let bad = |message: String| ModelError::Delta {
            origin: self.origin.clone(),
            message,
        };
        for (name, shape, change) in &self.changes {
            let base = tensors
                .get(name)
                .ok_or_else(|| bad(format!("the base model has no tensor {name}")))?;
            if base.dims() != shape.as_slice() {
                return Err(bad(format!(
                    "{name} has shape {shape:?} in the delta but {:?} in the base model",
                    base.dims()
                )));
            }
            let mut values = base.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
            for (v, d) in values.iter_mut().zip(change) {
                *v += d;
            }
            let merged = Tensor::from_vec(values, shape.as_slice(), &Device::Cpu)?;
            tensors.insert(name.clone(), merged.to_dtype(base.dtype())?);
        }
        Ok(())
    }
}

/// Little-endian f16 values as f32, or None when the tensor is not F16.
fn f16_values(dtype: Dtype, data: &[u8]) -> Option<Vec<f32>> {
    (dtype == Dtype::F16).then(|| {
        data.chunks_exact(2)
            .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect()
    })
}

/// The f32 values of a rows x cols matrix stored as packed 4-bit integers with a scale per group.
fn dequantize(q4: &[u8], scales: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(rows * cols);
    for r in 0..rows {
        for c in 0..cols {
            let byte = q4[r * cols / 2 + c / 2];
            let nibble = if c % 2 == 0 { byte & 0x0f } else { byte >> 4 };
            out.push((nibble as i32 - 8) as f32 * scales[r * cols / GROUP + c / GROUP]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use safetensors::tensor::TensorView;

    /// A delta file in the layout `finetune_minilm.py --save-delta` writes.
    fn file(tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)], format: &str) -> Vec<u8> {
        let views: Vec<(String, TensorView)> = tensors
            .iter()
            .map(|(n, d, s, b)| (n.to_string(), TensorView::new(*d, s.clone(), b).unwrap()))
            .collect();
        let meta = HashMap::from([("format".to_string(), format.to_string())]);
        safetensors::serialize(views, Some(meta)).unwrap()
    }

    fn f16_bytes(values: &[f32]) -> Vec<u8> {
        values
            .iter()
            .flat_map(|v| f16::from_f32(*v).to_le_bytes())
            .collect()
    }

    /// A 2 x 64 matrix delta: row 0 counts q = -7..=7 over its columns, row 1 is all +1; scales 0.5
    /// and 0.25 for row 0's two groups, 1.0 for row 1's. And a bias delta.
    fn sample() -> Vec<u8> {
        let mut q4 = Vec::new();
        for r in 0..2 {
            for pair in 0..32 {
                let q = |c: usize| if r == 0 { (c % 15) as i32 - 7 } else { 1 };
                let (lo, hi) = ((q(2 * pair) + 8) as u8, (q(2 * pair + 1) + 8) as u8);
                q4.push(lo | (hi << 4));
            }
        }
        file(
            &[
                ("w.delta_q4", Dtype::U8, vec![2, 32], q4),
                (
                    "w.delta_scale",
                    Dtype::F16,
                    vec![2, 2],
                    f16_bytes(&[0.5, 0.25, 1.0, 1.0]),
                ),
                ("b.delta", Dtype::F16, vec![3], f16_bytes(&[0.5, -1.0, 2.0])),
            ],
            DELTA_FORMAT,
        )
    }

    #[test]
    fn dequantises_and_adds_to_the_base_tensors() {
        let delta = EncoderDelta::from_bytes(&sample(), "sample").unwrap();
        let mut tensors = HashMap::from([
            (
                "w".to_string(),
                Tensor::ones((2, 64), DType::F32, &Device::Cpu).unwrap(),
            ),
            (
                "b".to_string(),
                Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap(),
            ),
            (
                "other".to_string(),
                Tensor::ones(2, DType::F32, &Device::Cpu).unwrap(),
            ),
        ]);
        delta.apply(&mut tensors).unwrap();
        let w = tensors["w"].to_vec2::<f32>().unwrap();
        assert_eq!((w[0].len(), w[1].len()), (64, 64));
        for (c, (&first, &second)) in w[0].iter().zip(&w[1]).enumerate() {
            let scale = if c < 32 { 0.5 } else { 0.25 };
            assert_eq!(first, 1.0 + ((c % 15) as f32 - 7.0) * scale, "column {c}");
            assert_eq!(second, 2.0);
        }
        assert_eq!(tensors["b"].to_vec1::<f32>().unwrap(), vec![0.5, -1.0, 2.0]);
        assert_eq!(tensors["other"].to_vec1::<f32>().unwrap(), vec![1.0, 1.0]);
        assert!(delta.id().starts_with("delta-") && delta.id().len() == 22);
    }

    #[test]
    fn a_zero_delta_changes_nothing() {
        let zero = file(
            &[
                ("w.delta_q4", Dtype::U8, vec![1, 16], vec![0x88; 16]),
                ("w.delta_scale", Dtype::F16, vec![1, 1], f16_bytes(&[0.3])),
            ],
            DELTA_FORMAT,
        );
        let delta = EncoderDelta::from_bytes(&zero, "zero").unwrap();
        let base: Vec<f32> = (0..32).map(|i| i as f32 * 0.37 - 3.0).collect();
        let mut tensors = HashMap::from([(
            "w".to_string(),
            Tensor::from_vec(base.clone(), (1, 32), &Device::Cpu).unwrap(),
        )]);
        delta.apply(&mut tensors).unwrap();
        assert_eq!(
            tensors["w"]
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap(),
            base
        );
    }

    #[test]
    fn bad_files_are_clear_errors() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (
                b"not a safetensors file at all".to_vec(),
                "not a safetensors file",
            ),
            (
                file(
                    &[("b.delta", Dtype::F16, vec![1], f16_bytes(&[1.0]))],
                    "other",
                ),
                "expected \"scanaid-delta-q4\"",
            ),
            (
                file(
                    &[("b.delta", Dtype::F32, vec![1], vec![0; 4])],
                    DELTA_FORMAT,
                ),
                "expected F16",
            ),
            (
                file(
                    &[("w.delta_q4", Dtype::U8, vec![1, 16], vec![0x88; 16])],
                    DELTA_FORMAT,
                ),
                "has no w.delta_scale",
            ),
            (
                file(
                    &[
                        ("w.delta_q4", Dtype::U8, vec![1, 16], vec![0x88; 16]),
                        (
                            "w.delta_scale",
                            Dtype::F16,
                            vec![1, 2],
                            f16_bytes(&[1.0, 1.0]),
                        ),
                    ],
                    DELTA_FORMAT,
                ),
                "expected [1, 1]",
            ),
            (
                file(
                    &[("w.weight", Dtype::F16, vec![1], f16_bytes(&[1.0]))],
                    DELTA_FORMAT,
                ),
                "is not a delta",
            ),
            (file(&[], DELTA_FORMAT), "holds no deltas"),
            (
                file(
                    &[
                        ("w.delta_q4", Dtype::U8, vec![0, 16], vec![]),
                        ("w.delta_scale", Dtype::F16, vec![0, 1], vec![]),
                    ],
                    DELTA_FORMAT,
                ),
                "expected a non-empty U8 matrix",
            ),
            (
                file(
                    &[
                        ("w.delta_q4", Dtype::U8, vec![1, 8], vec![0x88; 8]),
                        ("w.delta_scale", Dtype::F16, vec![1, 0], vec![]),
                    ],
                    DELTA_FORMAT,
                ),
                "16 columns, not a multiple of 32",
            ),
            (
                file(
                    &[
                        ("w.delta", Dtype::F16, vec![32], f16_bytes(&[0.0; 32])),
                        ("w.delta_q4", Dtype::U8, vec![1, 16], vec![0x88; 16]),
                        ("w.delta_scale", Dtype::F16, vec![1, 1], f16_bytes(&[1.0])),
                    ],
                    DELTA_FORMAT,
                ),
                "w has two deltas",
            ),
            (
                file(
                    &[("b.delta", Dtype::F16, vec![2], f16_bytes(&[1.0, f32::NAN]))],
                    DELTA_FORMAT,
                ),
                "not finite",
            ),
            (
                file(
                    &[
                        ("w.delta_q4", Dtype::U8, vec![1, 16], vec![0x88; 16]),
                        (
                            "w.delta_scale",
                            Dtype::F16,
                            vec![1, 1],
                            f16_bytes(&[f32::INFINITY]),
                        ),
                    ],
                    DELTA_FORMAT,
                ),
                "not finite",
            ),
        ];
        for (bytes, expected) in cases {
            let err = EncoderDelta::from_bytes(&bytes, "case.safetensors")
                .err()
                .expect(expected)
                .to_string();
            assert!(
                err.contains("case.safetensors") && err.contains(expected),
                "{err} (wanted {expected})"
            );
        }
        let delta = EncoderDelta::from_bytes(&sample(), "sample").unwrap();
        let mut missing = HashMap::from([(
            "w".to_string(),
            Tensor::ones((2, 64), DType::F32, &Device::Cpu).unwrap(),
        )]);
        let err = delta.apply(&mut missing).unwrap_err().to_string();
        assert!(err.contains("the base model has no tensor b"), "{err}");
        let mut wrong = HashMap::from([
            (
                "w".to_string(),
                Tensor::ones((2, 32), DType::F32, &Device::Cpu).unwrap(),
            ),
            (
                "b".to_string(),
                Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap(),
            ),
        ]);
        let err = delta.apply(&mut wrong).unwrap_err().to_string();
        assert!(
            err.contains("shape [2, 64] in the delta but [2, 32]"),
            "{err}"
        );
    }
}
