//! The real MiniLM model (fetched on first use) reproduces the reference cosine in ../shared/MODELS.md.

use scanaid_models::embedder::cosine;
use scanaid_models::{ensure_model, BertEmbedder, Embedder, MINILM_L6_V2};

fn models_dir() -> std::path::PathBuf {
    std::env::var_os("SCANAID_MODELS_DIR")
        .map(Into::into)
        .unwrap_or_else(scanaid_models::default_models_dir)
}

#[test]
fn minilm_reproduces_the_reference_cosine() {
    let (dir, _) = ensure_model(&models_dir(), &MINILM_L6_V2).expect("model fetched and verified");
    let embedder = BertEmbedder::load(&dir, &MINILM_L6_V2).unwrap();
    assert_eq!(embedder.dim(), 384);
    let v = embedder
        .embed_passages(&[
            "How do I reschedule my appointment?",
            "I need to change the date of my doctor's visit.",
            "The compressor discharge temperature is too high.",
        ])
        .unwrap();
    for x in &v {
        let norm: f32 = x.iter().map(|a| a * a).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "unit length, got {norm}");
    }
    let related = cosine(&v[0], &v[1]);
    assert!(
        (related - 0.5674).abs() < 1e-3,
        "reference cosine 0.5674, got {related}"
    );
    let unrelated = cosine(&v[0], &v[2]);
    assert!(
        unrelated < 0.3,
        "an unrelated sentence scores low, got {unrelated}"
    );
}

#[test]
fn batching_and_padding_do_not_change_vectors() {
    let (dir, _) = ensure_model(&models_dir(), &MINILM_L6_V2).unwrap();
    let embedder = BertEmbedder::load(&dir, &MINILM_L6_V2).unwrap();
    let long = "Replace the pumping mechanism filter every 2,000 hours of operation. ".repeat(12);
    let alone = embedder.embed_queries(&["short question"]).unwrap();
    let batched = embedder
        .embed_queries(&[long.as_str(), "short question"])
        .unwrap();
    let c = cosine(&alone[0], &batched[1]);
    assert!(
        c > 0.9999,
        "padding to the longest must be masked out, cosine {c}"
    );
}

/// Our forward pass against candle-transformers' `BertModel` (padded batch, attention mask, mean
/// pooling over the mask) on the same weights: the vectors must agree to float rounding.
#[test]
fn the_packed_forward_matches_candle_bert_model() {
    use candle_core::{DType, Device, Tensor};
    use candle_nn::VarBuilder;
    use candle_transformers::models::bert::{BertModel, Config};

    let (dir, _) = ensure_model(&models_dir(), &MINILM_L6_V2).unwrap();
    let ours = BertEmbedder::load(&dir, &MINILM_L6_V2).unwrap();
    let long =
        "Replace the pumping mechanism filter every 2,000 hours and check the occlusion sensor. "
            .repeat(6);
    let texts = [
        "E-204 occlusion alarm",
        long.as_str(),
        "How do I reschedule my appointment?",
    ];
    let ids = ours.tokenize(&texts).unwrap();
    let expected = ours.embed_passages(&texts).unwrap();

    let config: Config =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let vb = unsafe {
        VarBuilder::from_mmaped_safetensors(
            &[dir.join("model.safetensors")],
            DType::F32,
            &Device::Cpu,
        )
        .unwrap()
    };
    let model = BertModel::load(vb, &config).unwrap();
    let len = ids.iter().map(Vec::len).max().unwrap();
    let mut flat = Vec::new();
    let mut mask = Vec::new();
    for s in &ids {
        flat.extend(
            s.iter()
                .copied()
                .chain(std::iter::repeat_n(0, len - s.len())),
        );
        mask.extend(
            std::iter::repeat_n(1u32, s.len()).chain(std::iter::repeat_n(0, len - s.len())),
        );
    }
    let n = ids.len();
    let input = Tensor::from_vec(flat, (n, len), &Device::Cpu).unwrap();
    let mask = Tensor::from_vec(mask, (n, len), &Device::Cpu).unwrap();
    let hidden = model
        .forward(&input, &input.zeros_like().unwrap(), Some(&mask))
        .unwrap();
    let maskf = mask.to_dtype(DType::F32).unwrap().unsqueeze(2).unwrap();
    let pooled = (hidden.broadcast_mul(&maskf).unwrap().sum(1).unwrap())
        .broadcast_div(&maskf.sum(1).unwrap())
        .unwrap();
    let reference = pooled.to_vec2::<f32>().unwrap();
    // These texts are one batch of more than 64 tokens, so they run the linear layers' arithmetic: int16
    // where AVX512-VNNI exists or SCANAID_MATMUL_KERNEL=int16 asks for it (measured up to 4.5e-4 per
    // component on these texts), else f32 on f16 weights (measured up to 8e-5; f32 weights gave 2e-7).
    let arithmetic = scanaid_models::bert::linear_arithmetic();
    let bound = if arithmetic.starts_with("int16") {
        1e-3
    } else {
        2e-4
    };
    for (ours, theirs) in expected.iter().zip(&reference) {
        let norm = theirs.iter().map(|x| x * x).sum::<f32>().sqrt();
        let max_diff = ours
            .iter()
            .zip(theirs)
            .map(|(a, b)| (a - b / norm).abs())
            .fold(0f32, f32::max);
        let cos: f32 = ours.iter().zip(theirs).map(|(a, b)| a * b / norm).sum();
        eprintln!("{arithmetic}: max component difference {max_diff}, cosine {cos}");
        assert!(
            max_diff < bound,
            "{arithmetic}: vectors differ by {max_diff}"
        );
        assert!(cos > 0.9999, "{arithmetic}: cosine to the reference {cos}");
    }
}
