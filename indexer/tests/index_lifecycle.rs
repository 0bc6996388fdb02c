//! Building, searching, re-indexing, rolling back and reading an index while another generation is
//! promoted, with the real embedding model.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};

use scanaid_indexer::generation;
use scanaid_indexer::{
    index_manuals, ChunkingConfig, Filters, Mode, OwnerScope, SearchIndex, SearchRequest,
};

use common::{embedder, write, COMPRESSOR, PUMP};

fn noop(_: usize, _: usize) {}

/// Indexes `manuals` into `index` with the default chunking and the real embedder.
fn build_default(
    manuals: &std::path::Path,
    index: &std::path::Path,
) -> scanaid_indexer::build::BuildReport {
    index_manuals(
        manuals,
        index,
        embedder().as_ref(),
        ChunkingConfig::default(),
        &mut noop,
    )
    .unwrap()
}

fn top_text(index: &SearchIndex, query: &str, mode: Mode) -> String {
    let hits = index
        .search(
            &SearchRequest::new(query, mode, 3),
            Some(embedder().as_ref()),
        )
        .unwrap();
    index.chunk(hits[0].ord).text.clone()
}

#[test]
fn index_round_trip_finds_codes_part_numbers_and_procedures() {
    let manuals = tempfile::tempdir().unwrap();
    let index_dir = tempfile::tempdir().unwrap();
    write(manuals.path(), "pump.md", PUMP);
    write(manuals.path(), "rsc.md", COMPRESSOR);
    let report = index_manuals(
        manuals.path(),
        index_dir.path(),
        embedder().as_ref(),
        ChunkingConfig::default(),
        &mut noop,
    )
    .unwrap();
    assert_eq!(report.n_reused, 0);
    assert_eq!(report.n_embedded, report.n_chunks);
    let index = SearchIndex::open_for(index_dir.path(), embedder().as_ref()).unwrap();
    assert_eq!(index.len(), report.n_chunks);
    for mode in [Mode::Bm25, Mode::Hybrid] {
        assert!(
            top_text(&index, "pump shows e204", mode).contains("E-204 | Downstream occlusion"),
            "{mode:?}"
        );
        assert!(
            top_text(&index, "how much oil goes in the compressor", mode).contains("18 litres"),
            "{mode:?}"
        );
    }
    assert!(top_text(
        &index,
        "what torque for the battery door screws",
        Mode::Dense
    )
    .contains("0.6 N·m"));
    // Hits carry both legs' scores in hybrid mode, and where the text came from.
    let hits = index
        .search(
            &SearchRequest::new("PN 4471-B", Mode::Hybrid, 5),
            Some(embedder().as_ref()),
        )
        .unwrap();
    assert!(hits[0].bm25.is_some() && hits[0].dense.is_some());
    let chunk = index.chunk(hits[0].ord);
    assert_eq!(chunk.manual_id, "pump-service");
    assert!(!chunk.anchor.is_empty());
}

#[test]
fn reindexing_one_changed_manual_reuses_the_other_embeddings_and_rollback_restores_text() {
    let manuals = tempfile::tempdir().unwrap();
    let index_dir = tempfile::tempdir().unwrap();
    write(manuals.path(), "pump.md", PUMP);
    write(manuals.path(), "rsc.md", COMPRESSOR);
    let first = index_manuals(
        manuals.path(),
        index_dir.path(),
        embedder().as_ref(),
        ChunkingConfig::default(),
        &mut noop,
    )
    .unwrap();
    write(
        manuals.path(),
        "rsc.md",
        &COMPRESSOR.replace("18 litres", "21 litres"),
    );
    let second = index_manuals(
        manuals.path(),
        index_dir.path(),
        embedder().as_ref(),
        ChunkingConfig::default(),
        &mut noop,
    )
    .unwrap();
    assert_eq!(second.n_chunks, first.n_chunks);
    assert_eq!(
        second.n_embedded, 1,
        "only the edited chunk is embedded again"
    );
    assert_eq!(second.n_reused, first.n_chunks - 1);
    assert_ne!(first.generation, second.generation);
    let index = SearchIndex::open(index_dir.path()).unwrap();
    assert!(top_text(&index, "how much compressor oil", Mode::Hybrid).contains("21 litres"));

    let (from, to) = generation::rollback(index_dir.path()).unwrap();
    assert_eq!(
        (from.as_str(), to.as_str()),
        (second.generation.as_str(), first.generation.as_str())
    );
    let index = SearchIndex::open(index_dir.path()).unwrap();
    assert_eq!(index.generation, first.generation);
    assert!(top_text(&index, "how much compressor oil", Mode::Hybrid).contains("18 litres"));
    // Nothing older to go back to.
    assert!(generation::rollback(index_dir.path())
        .unwrap_err()
        .to_string()
        .contains("nothing to roll back"));
}

#[test]
fn malformed_manuals_are_reported_and_the_rest_indexes_and_nothing_half_built_is_served() {
    let manuals = tempfile::tempdir().unwrap();
    let index_dir = tempfile::tempdir().unwrap();
    write(manuals.path(), "pump.md", PUMP);
    write(
        manuals.path(),
        "broken.md",
        "+++\nid = \"x\"\ntitle = \n+++\n# A\n",
    );
    write(manuals.path(), "dup.md", PUMP);
    std::fs::write(
        manuals.path().join("image.md"),
        [0x89u8, b'P', b'N', b'G', 0, 0, 1],
    )
    .unwrap();
    let report = index_manuals(
        manuals.path(),
        index_dir.path(),
        embedder().as_ref(),
        ChunkingConfig::default(),
        &mut noop,
    )
    .unwrap();
    let reasons: Vec<String> = report.problems.iter().map(|p| p.to_string()).collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("broken.md: line 3: broken front matter")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("image.md: binary file")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("duplicate manual id \"pump-service\"")),
        "{reasons:?}"
    );
    let before = generation::current(index_dir.path()).unwrap();

    // A folder with nothing usable changes nothing.
    let bad = tempfile::tempdir().unwrap();
    write(bad.path(), "broken.md", "no front matter");
    let err = index_manuals(
        bad.path(),
        index_dir.path(),
        embedder().as_ref(),
        ChunkingConfig::default(),
        &mut noop,
    )
    .unwrap_err();
    assert!(err.to_string().contains("no usable manual"), "{err}");
    assert_eq!(generation::current(index_dir.path()).unwrap(), before);
    assert!(SearchIndex::open(index_dir.path()).is_ok());
}

#[test]
fn filters_apply_inside_both_legs_before_top_k() {
    let manuals = tempfile::tempdir().unwrap();
    let index_dir = tempfile::tempdir().unwrap();
    // Many strongly matching technician chunks and a few weakly matching operator ones: a filter
    // applied after a top-k cut would return nothing for the operator.
    let mut body = String::from("+++\nid = \"many\"\ntitle = \"Battery Manual\"\nmodels = [\"VP-300\"]\naudience = [\"technician\"]\nrevision = \"1\"\n+++\n");
    for i in 0..40 {
        body.push_str(&format!("# Battery replacement step group {i}\n\nReplace the battery pack and check the battery voltage, battery {i}.\n\n"));
    }
    for i in 0..3 {
        body.push_str(&format!("# Operator note {i} {{audience=operator}}\n\nThe battery icon shows charge level {i}.\n\n"));
    }
    write(manuals.path(), "many.md", &body);
    write(manuals.path(), "rsc.md", COMPRESSOR);
    // A patient's document: owned, so invisible unless a search's scope names its owner.
    write(
        manuals.path(),
        "private.md",
        "+++\nid = \"packet-p1-1\"\ntitle = \"Your plan\"\naudience = [\"patient\"]\nrevision = \"1\"\nowner = \"p1\"\n+++\n# Your battery of tests\n\nYour battery of blood tests is on Monday at the clinic.\n",
    );
    // The same patient's note in Spanish, a language no public manual here is written in.
    write(
        manuals.path(),
        "private-es.md",
        "+++\nid = \"packet-p1-2\"\ntitle = \"Su plan\"\naudience = [\"patient\"]\nlanguage = \"es\"\nrevision = \"1\"\nowner = \"p1\"\n+++\n# Sus análisis\n\nSus análisis de sangre son el lunes en la clínica.\n",
    );
    index_manuals(
        manuals.path(),
        index_dir.path(),
        embedder().as_ref(),
        ChunkingConfig::default(),
        &mut noop,
    )
    .unwrap();
    let mut index = SearchIndex::open(index_dir.path()).unwrap();
    let mut settings = index.settings;
    settings.candidates = 5; // a small candidate pool makes post-filtering visibly wrong
    index = index.with_settings(settings).unwrap();
    for mode in [Mode::Bm25, Mode::Dense, Mode::Hybrid] {
        let mut req = SearchRequest::new("replace the battery", mode, 3);
        req.filters.audiences = vec!["operator".into()];
        let hits = index.search(&req, Some(embedder().as_ref())).unwrap();
        assert_eq!(hits.len(), 3, "{mode:?}: a full page of allowed hits");
        assert!(
            hits.iter()
                .all(|h| index.chunk(h.ord).audiences == vec!["operator"]),
            "{mode:?}"
        );
        // Words both manuals have: unfiltered, the compressor's manual is among the hits (so the
        // filtered check below can fail); filtered to the pump's model, only the pump's remain.
        let mut req = SearchRequest::new("oil and battery", mode, 10);
        let unfiltered = index.search(&req, Some(embedder().as_ref())).unwrap();
        assert!(
            unfiltered
                .iter()
                .any(|h| index.chunk(h.ord).manual_id == "rsc-service"),
            "{mode:?}: the compressor's manual matches unfiltered"
        );
        req.filters.models = vec!["VP-300".into()];
        let hits = index.search(&req, Some(embedder().as_ref())).unwrap();
        assert!(!hits.is_empty(), "{mode:?}");
        assert!(
            hits.iter().all(|h| index.chunk(h.ord).manual_id == "many"),
            "{mode:?}: model filter"
        );
    }
    // Owner scoping: the owned document is invisible to public searches, visible to its owner's
    // scope and to `Everything`, and never to another owner's.
    let owned_in = |owner: OwnerScope| -> bool {
        let mut req = SearchRequest::new("battery of blood tests", Mode::Hybrid, 50);
        req.filters = Filters {
            owner,
            ..Filters::default()
        };
        let hits = index.search(&req, Some(embedder().as_ref())).unwrap();
        assert!(!hits.is_empty());
        hits.iter()
            .any(|h| index.chunk(h.ord).owner.as_deref() == Some("p1"))
    };
    assert!(!owned_in(OwnerScope::Public));
    assert!(!owned_in(OwnerScope::PublicAnd("p2".into())));
    assert!(owned_in(OwnerScope::PublicAnd("p1".into())));
    assert!(owned_in(OwnerScope::Everything));
    // A public question is read against the public manuals' languages (English only here): the
    // Spanish packet brings Spanish into its owner's searches, not anybody else's.
    let language_in = |owner: OwnerScope| {
        let mut req = SearchRequest::new(
            "¿Cuándo son mis análisis de sangre en la clínica?",
            Mode::Hybrid,
            5,
        );
        req.filters.owner = owner;
        index.question_language(&req)
    };
    assert_eq!(language_in(OwnerScope::Public), None);
    assert_eq!(language_in(OwnerScope::PublicAnd("p2".into())), None);
    assert_eq!(language_in(OwnerScope::PublicAnd("p1".into())), Some("es"));
    assert_eq!(language_in(OwnerScope::Everything), Some("es"));
}

#[test]
fn readers_never_observe_a_partial_generation_while_another_is_promoted() {
    let manuals = tempfile::tempdir().unwrap();
    let index_dir = tempfile::tempdir().unwrap();
    write(manuals.path(), "pump.md", PUMP);
    write(manuals.path(), "rsc.md", COMPRESSOR);
    index_manuals(
        manuals.path(),
        index_dir.path(),
        embedder().as_ref(),
        ChunkingConfig::default(),
        &mut noop,
    )
    .unwrap();
    let done = AtomicBool::new(false);
    let opened = std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let mut seen = std::collections::BTreeSet::new();
            let mut opens = 0;
            while !done.load(Ordering::SeqCst) || opens < 5 {
                let index = SearchIndex::open(index_dir.path())
                    .expect("a reader always opens a complete generation");
                assert_eq!(index.len(), index.meta.n_chunks);
                let hits = index
                    .search(&SearchRequest::new("E-204 occlusion", Mode::Bm25, 1), None)
                    .unwrap();
                let text = &index.chunk(hits[0].ord).text;
                // Every generation written below is internally consistent: one revision marker per build.
                let marker = index
                    .chunks()
                    .iter()
                    .find(|c| c.manual_id == "pump-service")
                    .unwrap()
                    .revision
                    .clone();
                assert!(index
                    .chunks()
                    .iter()
                    .filter(|c| c.manual_id == "pump-service")
                    .all(|c| c.revision == marker));
                assert!(text.contains("E-204"));
                seen.insert(index.generation.clone());
                opens += 1;
            }
            (opens, seen)
        });
        for rev in ["C", "D", "E", "F"] {
            write(
                manuals.path(),
                "pump.md",
                &PUMP.replace("revision = \"B\"", &format!("revision = \"{rev}\"")),
            );
            index_manuals(
                manuals.path(),
                index_dir.path(),
                embedder().as_ref(),
                ChunkingConfig::default(),
                &mut noop,
            )
            .unwrap();
        }
        done.store(true, Ordering::SeqCst);
        reader.join().unwrap()
    });
    assert!(opened.0 >= 5);
    assert!(!opened.1.is_empty());
    assert_eq!(
        generation::current(index_dir.path()).unwrap().as_deref(),
        Some("g000005")
    );
    // Pruned to exactly the newest KEEP_GENERATIONS (4), the served one among them.
    assert_eq!(
        generation::list(index_dir.path()).unwrap(),
        ["g000002", "g000003", "g000004", "g000005"]
    );
}

#[test]
fn builders_at_the_same_time_take_turns_and_each_promotes_a_whole_generation() {
    // Two writers on one index directory (the server re-indexing while an admin runs `scanaid
    // index`): without the writer lock both pick the same next generation name and one fails.
    let manuals = tempfile::tempdir().unwrap();
    let index_dir = tempfile::tempdir().unwrap();
    write(manuals.path(), "pump.md", PUMP);
    write(manuals.path(), "rsc.md", COMPRESSOR);
    let build = || {
        index_manuals(
            manuals.path(),
            index_dir.path(),
            embedder().as_ref(),
            ChunkingConfig::default(),
            &mut noop,
        )
    };
    build().unwrap(); // warm the embedding cache so the racing builds are quick and close together
    let names: Vec<String> = std::thread::scope(|s| {
        let builders: Vec<_> = (0..4).map(|_| s.spawn(build)).collect();
        builders
            .into_iter()
            .map(|b| {
                b.join()
                    .unwrap()
                    .expect("every builder succeeds")
                    .generation
            })
            .collect()
    });
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        4,
        "each build got its own generation: {names:?}"
    );
    let index = SearchIndex::open(index_dir.path()).unwrap();
    assert_eq!(index.len(), index.meta.n_chunks);
}

#[test]
fn forgetting_all_but_the_current_generation_leaves_no_text_or_vector_of_a_deleted_manual() {
    let manuals = tempfile::tempdir().unwrap();
    let index_dir = tempfile::tempdir().unwrap();
    write(manuals.path(), "pump.md", PUMP);
    write(manuals.path(), "rsc.md", COMPRESSOR);
    let build = || build_default(manuals.path(), index_dir.path());
    let both = build();
    // A cache file of another model: its vectors serve no kept generation.
    let cache_dir = index_dir.path().join("embedding-cache");
    std::fs::write(cache_dir.join("other-model.384.bin"), b"SAEMB01\n").unwrap();
    std::fs::remove_file(manuals.path().join("rsc.md")).unwrap();
    let pump_only = build();
    assert_eq!(pump_only.n_embedded, 0, "the pump's vectors are reused");
    let cached = |dir: &std::path::Path| -> usize {
        std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| std::fs::metadata(e.path()).unwrap().len() as usize)
            .sum()
    };
    let record = 32 + 4 * embedder().dim();
    assert_eq!(
        (cached(&cache_dir) - 2 * 8) / record,
        both.n_chunks,
        "every chunk of both manuals has its vector cached (one window each)"
    );

    // What a build killed half-way left: the deleted manual's text, unseen by `list` and `prune`.
    let stale = generation::generations_dir(index_dir.path()).join(".building-g000099-1");
    std::fs::create_dir_all(&stale).unwrap();
    std::fs::write(stale.join("chunks.jsonl"), COMPRESSOR).unwrap();
    let forgotten = scanaid_indexer::build::forget_all_but_current(index_dir.path()).unwrap();
    assert_eq!(forgotten.generations, vec![both.generation.clone()]);
    assert_eq!(forgotten.embeddings, both.n_chunks - pump_only.n_chunks);
    assert_eq!(forgotten.cache_files, 1);
    assert_eq!(
        generation::list(index_dir.path()).unwrap(),
        vec![pump_only.generation.clone()]
    );
    assert_eq!((cached(&cache_dir) - 8) / record, pump_only.n_chunks);
    // No file holds the deleted manual's text any more.
    let marker = "18 litres";
    assert!(COMPRESSOR.contains(marker) && !PUMP.contains(marker));
    let mut pending = vec![index_dir.path().to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                assert!(
                    !bytes.windows(marker.len()).any(|w| w == marker.as_bytes()),
                    "{} still holds the deleted manual's text",
                    path.display()
                );
            }
        }
    }
    // The index still serves, and the next build reuses every vector it kept.
    let index = SearchIndex::open(index_dir.path()).unwrap();
    assert_eq!(index.generation, pump_only.generation);
    assert_eq!(build().n_embedded, 0);
}

#[test]
fn a_huge_limit_and_a_damaged_dimension_are_errors_or_capped_never_a_panic() {
    let manuals = tempfile::tempdir().unwrap();
    let index_dir = tempfile::tempdir().unwrap();
    write(manuals.path(), "pump.md", PUMP);
    let report = build_default(manuals.path(), index_dir.path());
    let index = SearchIndex::open(index_dir.path()).unwrap();
    for mode in [Mode::Bm25, Mode::Dense, Mode::Hybrid] {
        let hits = index
            .search(
                &SearchRequest::new("battery", mode, usize::MAX),
                Some(embedder().as_ref()),
            )
            .unwrap();
        assert!(!hits.is_empty() && hits.len() <= index.len(), "{mode:?}");
    }
    // A meta.json whose dimension is 0 (or absurd) is refused with the file named.
    let dir = generation::generation_dir(index_dir.path(), &report.generation);
    let meta_path = dir.join("meta.json");
    let meta = std::fs::read_to_string(&meta_path).unwrap();
    for dim in ["0", "18446744073709551615"] {
        let damaged = meta.replacen("\"dim\": 384", &format!("\"dim\": {dim}"), 1);
        assert_ne!(damaged, meta, "the dimension is where the test expects it");
        std::fs::write(&meta_path, damaged).unwrap();
        let err = match SearchIndex::open(index_dir.path()) {
            Ok(_) => panic!("a damaged dimension {dim} opened"),
            Err(e) => e.to_string(),
        };
        assert!(
            err.contains("meta.json") && err.contains("dimension"),
            "{err}"
        );
    }
}
