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
