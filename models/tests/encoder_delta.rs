//! A tuned encoder delta (`models/src/delta.rs`) merged into the real MiniLM weights.

use std::collections::HashMap;

use safetensors::tensor::{Dtype, TensorView};
use scanaid_models::{ensure_model, BertEmbedder, Embedder, EncoderDelta, MINILM_L6_V2};

fn models_dir() -> std::path::PathBuf {
    std::env::var_os("SCANAID_MODELS_DIR")
        .map(Into::into)
        .unwrap_or_else(scanaid_models::default_models_dir)
}

/// A delta over every encoder matrix and vector of the model in `dir`, each q4 byte `byte` with scale
/// `scale` (0x88 is q = 0 in both nibbles), vectors unchanged.
fn delta_over_encoder(dir: &std::path::Path, byte: u8, scale: f32) -> Vec<u8> {
    let base =
        candle_core::safetensors::load(dir.join("model.safetensors"), &candle_core::Device::Cpu)
            .unwrap();
    let mut owned: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, tensor) in &base {
        if !name.starts_with("encoder.") {
            continue;
        }
        match tensor.dims() {
            [rows, cols] => {
                owned.push((
                    format!("{name}.delta_q4"),
                    Dtype::U8,
                    vec![*rows, cols / 2],
                    vec![byte; rows * cols / 2],
                ));
                let scales = half::f16::from_f32(scale)
                    .to_le_bytes()
                    .repeat(rows * cols / 32);
                owned.push((
                    format!("{name}.delta_scale"),
                    Dtype::F16,
                    vec![*rows, cols / 32],
                    scales,
                ));
            }
            [len] => owned.push((
                format!("{name}.delta"),
                Dtype::F16,
                vec![*len],
                vec![0; len * 2],
            )),
            other => panic!("unexpected shape {other:?} for {name}"),
        }
    }
    let views: Vec<(String, TensorView)> = owned
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    let meta = HashMap::from([("format".to_string(), "scanaid-delta-q4".to_string())]);
    safetensors::serialize(views, Some(meta)).unwrap()
}

const TEXTS: [&str; 2] = [
    "How do I reschedule my appointment?",
    "Replace the pumping mechanism filter every 2,000 hours of operation.",
];

#[test]
fn a_zero_delta_gives_the_base_models_vectors_under_its_own_id() {
    let (dir, _) = ensure_model(&models_dir(), &MINILM_L6_V2).unwrap();
    let base = BertEmbedder::load(&dir, &MINILM_L6_V2).unwrap();
    let delta = EncoderDelta::from_bytes(&delta_over_encoder(&dir, 0x88, 0.01), "zero").unwrap();
    let tuned = BertEmbedder::load_tuned(&dir, &MINILM_L6_V2, Some(&delta)).unwrap();
    assert_eq!(
        base.embed_passages(&TEXTS).unwrap(),
        tuned.embed_passages(&TEXTS).unwrap()
    );
    assert_eq!(base.model_id(), "all-MiniLM-L6-v2");
    assert_eq!(tuned.model_id(), format!("all-MiniLM-L6-v2+{}", delta.id()));
}

#[test]
fn a_nonzero_delta_moves_the_vectors() {
    let (dir, _) = ensure_model(&models_dir(), &MINILM_L6_V2).unwrap();
    let base = BertEmbedder::load(&dir, &MINILM_L6_V2).unwrap();
    // q = +1 in every position at scale 0.002: a small, uniform push on every weight.
    let delta =
        EncoderDelta::from_bytes(&delta_over_encoder(&dir, 0x99, 0.002), "uniform").unwrap();
    let tuned = BertEmbedder::load_tuned(&dir, &MINILM_L6_V2, Some(&delta)).unwrap();
    let (a, b) = (
        base.embed_passages(&TEXTS).unwrap(),
        tuned.embed_passages(&TEXTS).unwrap(),
    );
    for (x, y) in a.iter().zip(&b) {
        let cos = scanaid_models::embedder::cosine(x, y);
        assert!(
            cos < 0.9999 && cos > 0.5,
            "the delta must change the vectors, but not wreck them: {cos}"
        );
    }
}

/// The delta `--embedding-model minilm` ships: it matches its pin, fits the real model's tensors, moves
/// the vectors, and keeps MODELS.md's reference pair related (0.5674 for the base model).
#[test]
fn the_bundled_delta_is_pinned_and_fits_the_real_model() {
    let (dir, _) = ensure_model(&models_dir(), &MINILM_L6_V2).unwrap();
    let delta = scanaid_models::delta::MINILM_TUNED
        .load()
        .expect("the bundled delta matches its pin");
    let base = BertEmbedder::load(&dir, &MINILM_L6_V2).unwrap();
    let tuned = BertEmbedder::load_tuned(&dir, &MINILM_L6_V2, Some(&delta)).unwrap();
    assert!(tuned.model_id().starts_with("all-MiniLM-L6-v2+delta-"));
    let texts = [
        "How do I reschedule my appointment?",
        "I need to change the date of my doctor's visit.",
        "The compressor discharge temperature is too high.",
    ];
    let (a, b) = (
        base.embed_passages(&texts).unwrap(),
        tuned.embed_passages(&texts).unwrap(),
    );
    for (x, y) in a.iter().zip(&b) {
        let cos = scanaid_models::embedder::cosine(x, y);
        assert!(
            cos < 0.9999 && cos > 0.8,
            "tuned against base vector: {cos}"
        );
    }
    let related = scanaid_models::embedder::cosine(&b[0], &b[1]);
    let unrelated = scanaid_models::embedder::cosine(&b[0], &b[2]);
    assert!(
        related > 0.4 && unrelated < 0.3,
        "related {related}, unrelated {unrelated}"
    );
}

#[test]
fn a_bundled_delta_that_fails_its_pin_is_a_clear_error() {
    let pinned = &scanaid_models::delta::MINILM_TUNED;
    let changed = scanaid_models::delta::BuiltInDelta {
        sha256: "00",
        ..*pinned
    };
    let err = changed.load().err().expect("a wrong pin fails").to_string();
    assert!(
        err.contains("fails its checksum") && err.contains(pinned.file),
        "{err}"
    );
}

/// The bundled delta decoded by our reader gives the vectors that torch gives with the same file decoded
/// independently (`evals/experiments/delta_reference.py`, which follows the writer's layout): a swapped
/// nibble order, a wrong group axis or a transposed matrix would move them far beyond the bound.
#[test]
fn the_bundled_delta_decodes_as_the_python_writer_meant() {
    let (dir, _) = ensure_model(&models_dir(), &MINILM_L6_V2).unwrap();
    let reference: serde_json::Value = serde_json::from_str(include_str!(
        "../tuned/all-MiniLM-L6-v2.scifact-train.reference.json"
    ))
    .unwrap();
    assert_eq!(reference["tensors_changed"], 96);
    let texts: Vec<&str> = reference["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    let expected: Vec<Vec<f32>> = reference["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            v.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect()
        })
        .collect();
    let delta = scanaid_models::delta::MINILM_TUNED.load().unwrap();
    let tuned = BertEmbedder::load_tuned(&dir, &MINILM_L6_V2, Some(&delta)).unwrap();
    let base = BertEmbedder::load(&dir, &MINILM_L6_V2).unwrap();
    let max_diff = |a: &[Vec<f32>]| -> f32 {
        a.iter()
            .zip(&expected)
            .flat_map(|(x, y)| x.iter().zip(y).map(|(p, q)| (p - q).abs()))
            .fold(0.0, f32::max)
    };
    // The same bound as our encoder against candle's BertModel (int16 arithmetic measured 4.5e-4).
    let ours = max_diff(&tuned.embed_passages(&texts).unwrap());
    assert!(
        ours < 1e-3,
        "tuned vectors off the torch reference by {ours}"
    );
    let untuned = max_diff(&base.embed_passages(&texts).unwrap());
    assert!(
        untuned > 1e-2,
        "the reference must tell the delta apart from no delta: {untuned}"
    );
}
