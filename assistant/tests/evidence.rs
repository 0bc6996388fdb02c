//! The confidence model's eight features, each computed by hand for hits built by hand over a real
//! index (the real MiniLM embedder builds it; `analyse` and the chunk texts are the index's own).

mod common;

use common::{embedder, index_of};
use scanaid_assistant::{evidence, FEATURE_NAMES};
use scanaid_indexer::{Analysis, Hit, LegScore, Mode, SearchRequest};

const MANUAL: &str = r#"+++
id = "pump"
title = "Pump manual"
audience = ["technician"]
revision = "1"
+++
# Battery

Replace the battery pack.

# Filter

Clean the air filter.

# Door

Close the door latch.
"#;

fn hit(ord: u32, bm25: Option<(u32, f32)>, dense: Option<(u32, f32)>) -> Hit {
    let leg = |l: Option<(u32, f32)>| l.map(|(rank, score)| LegScore { rank, score });
    Hit {
        ord,
        chunk_id: String::new(),
        score: 0.0,
        bm25: leg(bm25),
        dense: leg(dense),
    }
}

fn feature(values: &[f64], name: &str) -> f64 {
    values[FEATURE_NAMES.iter().position(|n| *n == name).unwrap()]
}

#[test]
fn each_feature_is_what_its_name_says() {
    let (index, _dir) = index_of(&[("pump.md", MANUAL)], embedder().as_ref());
    let ord = |anchor: &str| {
        index
            .chunks()
            .iter()
            .position(|c| c.anchor == anchor)
            .unwrap() as u32
    };
    let (battery, filter, door) = (ord("battery"), ord("filter"), ord("door"));
    // "replace", "battery", "filter" once analysed ("the" is a stop word).
    let question = "replace the battery filter";
    assert_eq!(index.analyse(question, Analysis::English).len(), 3);
    let question = &SearchRequest::new(question, Mode::Hybrid, 10);

    // BM25 likes the battery section best, the dense leg the filter section; the door section is
    // only in the dense list.
    let hits = [
        hit(battery, Some((1, 6.0)), Some((2, 0.5))),
        hit(filter, Some((2, 3.0)), Some((1, 0.8))),
        hit(door, None, Some((3, 0.2))),
    ];
    let v = evidence(&index, question, &hits).values;
    close_in(&v, "top_cosine", 0.8);
    close_in(&v, "cosine_margin", 0.3);
    close_in(&v, "mean_cosine_top5", 0.5);
    close_in(&v, "top_bm25_per_term", 2.0);
    close_in(&v, "bm25_margin", 0.5);
    close_in(&v, "legs_agree", 0.0);
    // Three passages to rank: both legs' top 5 hold all of them whatever was asked, so the
    // overlap tells nothing (with six or more it is the share of the top 5 both legs hold).
    assert!(feature(&v, "overlap_top5").is_nan());
    close_in(&v, "term_coverage_top3", 1.0); // replace, battery (battery) and filter (filter)
                                             // Six ranked: battery and filter are in both legs' top 5; a BM25 hit ranked 7th on dense is not.
    let six = [
        hits[0].clone(),
        hits[1].clone(),
        hits[2].clone(),
        hit(door, Some((3, 1.0)), Some((7, 0.1))),
        hit(door, None, Some((4, 0.15))),
        hit(door, None, Some((5, 0.12))),
    ];
    close_in(
        &evidence(&index, question, &six).values,
        "overlap_top5",
        0.4,
    );

    // The same best passage in both legs: they agree. Only the door section: no question term
    // is covered.
    let agreeing = [
        hit(battery, Some((1, 6.0)), Some((1, 0.9))),
        hit(door, None, Some((2, 0.2))),
    ];
    let v = evidence(&index, question, &agreeing).values;
    close_in(&v, "legs_agree", 1.0);
    close_in(&v, "cosine_margin", 0.7);
    // The only passage holding the words, among others to choose from: fully above them.
    close_in(&v, "bm25_margin", 1.0);
    // One passage to choose from (a patient's packet of one note): how far the best stands above
    // the rest is unknown, not its whole cosine, and the model reads it as average.
    let alone = [hit(battery, Some((1, 6.0)), Some((1, 0.9)))];
    let v = evidence(&index, question, &alone).values;
    assert!(feature(&v, "cosine_margin").is_nan() && feature(&v, "bm25_margin").is_nan());
    assert!(feature(&v, "overlap_top5").is_nan());
    let model = scanaid_assistant::Logistic {
        mean: [0.5; FEATURE_NAMES.len()],
        scale: [0.25; FEATURE_NAMES.len()],
        weights: [1.0; FEATURE_NAMES.len()],
        bias: 0.0,
    };
    let mut at_mean = v;
    for name in ["cosine_margin", "bm25_margin", "overlap_top5"] {
        at_mean[FEATURE_NAMES.iter().position(|n| *n == name).unwrap()] = 0.5;
    }
    assert_eq!(model.predict(&v), model.predict(&at_mean));
    let door_only = [hit(door, None, Some((1, 0.3)))];
    let v = evidence(&index, question, &door_only).values;
    close_in(&v, "term_coverage_top3", 0.0);
    close_in(&v, "top_bm25_per_term", 0.0);
    close_in(&v, "legs_agree", 0.0);

    // No hits: every feature is 0.
    let v = evidence(&index, question, &[]).values;
    assert!(v.iter().all(|x| *x == 0.0), "{v:?}");
}

fn close_in(values: &[f64], name: &str, want: f64) {
    let got = feature(values, name);
    assert!((got - want).abs() < 1e-6, "{name}: {got}, want {want}");
}

#[test]
fn a_question_read_as_spanish_still_covers_the_english_passage_holding_its_words() {
    let english = r#"+++
id = "pump"
title = "Pump manual"
audience = ["technician"]
revision = "1"
+++
# Faults

E-204 means a downstream occlusion.
"#;
    let spanish = r#"+++
id = "bomba"
title = "Manual de la bomba"
audience = ["operator"]
language = "es"
revision = "1"
+++
# Limpieza

Limpie la carcasa con un paño húmedo.
"#;
    let (index, _dir) = index_of(
        &[("pump.md", english), ("bomba.md", spanish)],
        embedder().as_ref(),
    );
    let faults = index
        .chunks()
        .iter()
        .position(|c| c.anchor == "faults")
        .unwrap() as u32;
    // A code asked on a Spanish page: too short to identify, so the person's language decides and
    // the question is read by Spanish rules ("e" is a Spanish stop word). The English passage holds
    // every word of it as English rules read it.
    let mut request = SearchRequest::new("E-204", Mode::Hybrid, 10);
    request.language = Some("es".to_string());
    assert_eq!(index.question_analysis(&request), Analysis::Spanish);
    let hits = [hit(faults, Some((1, 4.0)), Some((1, 0.7)))];
    let v = evidence(&index, &request, &hits).values;
    close_in(&v, "term_coverage_top3", 1.0);
}
