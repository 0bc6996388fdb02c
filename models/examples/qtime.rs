use scanaid_models::{ensure_model, BertEmbedder, Embedder, MINILM_L6_V2};
use std::time::Instant;
fn main() {
    let (dir, _) = ensure_model(&scanaid_models::default_models_dir(), &MINILM_L6_V2).unwrap();
    let t = Instant::now();
    let e = BertEmbedder::load(&dir, &MINILM_L6_V2).unwrap();
    println!("load {:?}", t.elapsed());
    let tok = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
    for _ in 0..3 {
        let t = Instant::now();
        let _ = tok
            .encode("How do I clear error E-204 on the pump?", true)
            .unwrap();
        println!("tok {:?}", t.elapsed());
    }
    for _ in 0..200 {
        let t = Instant::now();
        let _ = e
            .embed_queries(&["How do I clear error E-204 on the pump?"])
            .unwrap();
        println!("embed {:?}", t.elapsed());
    }
}
