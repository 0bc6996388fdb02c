//! End-to-end tests of the real `scanaid` binary: index, search, rollback and the eval interface that
//! other tools depend on (its flags and JSON keys).

use std::path::Path;
use std::process::{Command, Output};

fn scanaid(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_scanaid"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("the binary runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

const MANUAL: &str = "+++\nid = \"dw-500\"\ntitle = \"DW-500H Dishwasher Manual\"\nmodels = [\"DW-500H\"]\naudience = [\"technician\"]\nrevision = \"1\"\n+++\n# Fault codes\n\n| Code | Meaning |\n|---|---|\n| F-05 | Rinse water below 82 °C |\n\n# Descaling\n\n1. Drain the tank.\n2. Add 500 ml of descaler PN 7720-D.\n";

#[test]
fn index_search_and_rollback_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("manuals")).unwrap();
    std::fs::write(dir.path().join("manuals/dw.md"), MANUAL).unwrap();
    std::fs::write(dir.path().join("manuals/bad.md"), "no front matter here").unwrap();
    let out = scanaid(
        &["index", "--manuals", "manuals", "--index", "idx"],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("generation g000001 promoted"), "{t}");
    assert!(
        t.contains("skipped") && t.contains("bad.md") && t.contains("front matter missing"),
        "{t}"
    );
    // --strict turns skipped files into a failing exit code, but still promotes the good ones.
    let out = scanaid(
        &[
            "index",
            "--manuals",
            "manuals",
            "--index",
            "idx",
            "--strict",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("(0 embedded, "), "{}", text(&out));

    let out = scanaid(
        &["search", "--index", "idx", "what does f05 mean"],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    let first = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    assert!(
        first.contains("Fault codes") && first.contains("#fault-codes"),
        "{first}"
    );

    let out = scanaid(&["index", "--index", "idx", "--rollback"], dir.path());
    assert!(
        out.status.success() && text(&out).contains("g000002 -> g000001"),
        "{}",
        text(&out)
    );
    let out = scanaid(&["index", "--index", "idx", "--rollback"], dir.path());
    assert!(
        !out.status.success() && text(&out).contains("nothing to roll back"),
        "{}",
        text(&out)
    );

    let out = scanaid(&["search", "--index", "missing", "x"], dir.path());
    assert!(
        !out.status.success() && text(&out).contains("no index at missing"),
        "{}",
        text(&out)
    );
}

#[test]
fn eval_retrieval_keeps_its_interface() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("tiny");
    std::fs::create_dir_all(data.join("qrels")).unwrap();
    std::fs::write(
        data.join("corpus.jsonl"),
        concat!(
            "{\"_id\": \"d1\", \"title\": \"Oil\", \"text\": \"Change the compressor oil every 4000 hours.\"}\n",
            "{\"_id\": \"d2\", \"title\": \"Belt\", \"text\": \"Check the fan belt tension monthly.\"}\n",
            "{\"_id\": \"d3\", \"title\": \"Filter\", \"text\": \"Replace the intake air filter when the indicator is red.\"}\n",
        ),
    )
    .unwrap();
    std::fs::write(
        data.join("queries.jsonl"),
        "{\"_id\": \"q1\", \"text\": \"how often is the oil changed\"}\n{\"_id\": \"q2\", \"text\": \"belt tension\"}\n",
    )
    .unwrap();
    std::fs::write(
        data.join("qrels/test.tsv"),
        "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\n",
    )
    .unwrap();
    for mode in ["bm25", "dense", "hybrid"] {
        let json = dir.path().join(format!("{mode}.json"));
        let out = scanaid(
            &[
                "eval",
                "retrieval",
                "--data",
                data.to_str().unwrap(),
                "--split",
                "test",
                "--mode",
                mode,
                "--json",
                json.to_str().unwrap(),
                "--run",
                &format!("{mode}.run"),
                "--cache-dir",
                "cache",
            ],
            dir.path(),
        );
        assert!(out.status.success(), "{}", text(&out));
        // The TREC run: each query's passages ranked from 1 with non-increasing scores.
        let run = std::fs::read_to_string(dir.path().join(format!("{mode}.run"))).unwrap();
        let mut last: Option<(String, u32, f64)> = None;
        for line in run.lines() {
            let cols: Vec<&str> = line.split(' ').collect();
            assert_eq!(cols.len(), 6, "{line}");
            assert_eq!(
                (cols[1], cols[5]),
                ("Q0", format!("scanaid-{mode}").as_str())
            );
            let (rank, score): (u32, f64) = (cols[3].parse().unwrap(), cols[4].parse().unwrap());
            match &last {
                Some((q, r, s)) if q == cols[0] => assert!(rank == r + 1 && score <= *s, "{run}"),
                _ => assert_eq!(rank, 1, "{run}"),
            }
            last = Some((cols[0].to_string(), rank, score));
        }
        assert!(
            run.starts_with("q1 Q0 d1 1 ") && run.contains("\nq2 Q0 d2 1 "),
            "{run}"
        );
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        for key in [
            "mode",
            "n_queries",
            "ndcg@10",
            "recall@10",
            "recall@100",
            "mrr@10",
            "index_s",
        ] {
            assert!(
                report.get(key).is_some(),
                "{mode}: missing {key} in {report}"
            );
        }
        assert!(report["latency_ms"]["p50"].is_number() && report["latency_ms"]["p95"].is_number());
        assert_eq!(report["mode"], mode);
        assert_eq!(report["n_queries"], 2);
        assert_eq!(
            report["ndcg@10"], 1.0,
            "{mode}: both queries find their passage first"
        );
        assert_eq!(
            report["per_query_ndcg@10"],
            serde_json::json!({"q1": 1.0, "q2": 1.0})
        );
    }
    // `--dense-weight` without `--fusion` re-weights the product's method instead of being ignored.
    let out = scanaid(
        &[
            "eval",
            "retrieval",
            "--data",
            data.to_str().unwrap(),
            "--dense-weight",
            "0.8",
            "--json",
            "weighted.json",
            "--cache-dir",
            "cache",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("weighted.json")).unwrap())
            .unwrap();
    assert_eq!(report["fusion"], "ZScore { dense_weight: 0.8 }", "{report}");
    // Two reports compared query by query; a report without per-query scores is refused by name.
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let out = scanaid(
        &["eval", "compare", &path("bm25.json"), &path("hybrid.json")],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(
            "| 2 | 1.0000 | 1.0000 | +0.0000 | +0.0000 to +0.0000 | 1.0000 | 0 / 0 / 2 |"
        ),
        "{}",
        text(&out)
    );
    std::fs::write(
        dir.path().join("old.json"),
        "{\"dataset\": \"tiny\", \"split\": \"test\", \"ndcg@10\": 0.5}",
    )
    .unwrap();
    let out = scanaid(
        &["eval", "compare", &path("old.json"), &path("hybrid.json")],
        dir.path(),
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("old.json") && text(&out).contains("no \"per_query_ndcg@10\""),
        "{}",
        text(&out)
    );
    // Reports of another split are refused, whatever their query ids.
    let mut report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("hybrid.json")).unwrap())
            .unwrap();
    report["split"] = "train".into();
    std::fs::write(dir.path().join("train.json"), report.to_string()).unwrap();
    let out = scanaid(
        &["eval", "compare", &path("train.json"), &path("hybrid.json")],
        dir.path(),
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("is tiny (train)") && text(&out).contains("is tiny (test)"),
        "{}",
        text(&out)
    );
    // Bad data names the file and line.
    std::fs::write(
        data.join("qrels/test.tsv"),
        "query-id\tcorpus-id\tscore\nq1\tnope\t1\n",
    )
    .unwrap();
    let out = scanaid(
        &[
            "eval",
            "retrieval",
            "--data",
            data.to_str().unwrap(),
            "--mode",
            "bm25",
        ],
        dir.path(),
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("test.tsv:2: corpus id \"nope\" is not in corpus.jsonl"),
        "{}",
        text(&out)
    );
}

#[test]
fn the_bm25_scale_benchmark_runs_and_reports_each_size() {
    let dir = tempfile::tempdir().unwrap();
    let out = scanaid(
        &["bench", "bm25", "--sizes", "300,1200", "--queries", "5"],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out);
    let rows: Vec<&str> = t
        .lines()
        .filter(|l| l.starts_with("| 300 |") || l.starts_with("| 1200 |"))
        .collect();
    assert_eq!(rows.len(), 2, "{t}");
    // Each row: size, words, build s, passages/s, index MB, RSS MB, latency.
    assert!(
        rows.iter()
            .all(|r| r.split('|').count() == 9 && r.contains(" / ")),
        "{t}"
    );
}

#[test]
fn the_vector_scale_benchmark_reports_recall_for_each_search_breadth() {
    let dir = tempfile::tempdir().unwrap();
    let out = scanaid(
        &[
            "bench",
            "vectors",
            "--sizes",
            "2000",
            "--queries",
            "20",
            "--dim",
            "32",
            "--clusters",
            "20",
            "--ef-search",
            "16,200",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out);
    let rows: Vec<Vec<String>> = t
        .lines()
        .filter(|l| l.starts_with("| 2000 |"))
        .map(|l| l.split('|').map(|c| c.trim().to_string()).collect())
        .collect();
    assert_eq!(rows.len(), 2, "one row per ef_search: {t}");
    assert_eq!(
        (rows[0][7].as_str(), rows[1][7].as_str()),
        ("16", "200"),
        "{t}"
    );
    // The graph saved and loaded again answers every query exactly as the one built.
    assert!(rows.iter().all(|r| r[4] == "20/20"), "{t}");
    let recall = |row: &Vec<String>| row[9].parse::<f64>().unwrap();
    // A wide search on 2,000 clustered vectors finds nearly all of the exact top 10.
    assert!(recall(&rows[1]) >= 0.9, "{t}");
    assert!(recall(&rows[1]) + 0.05 >= recall(&rows[0]), "{t}");
}

#[test]
fn eval_answerability_keeps_its_interface_and_separates_off_topic_questions() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("support");
    std::fs::create_dir_all(data.join("qrels")).unwrap();
    let passages = [
        ("Oil", "Change the compressor oil every 4000 hours with PN 4471-B synthetic oil."),
        ("Belt", "Check the fan belt tension monthly; it should deflect 10 mm under thumb pressure."),
        ("Filter", "Replace the intake air filter when the pressure-drop indicator turns red."),
        ("Drain", "Open the condensate drain valve daily until only air comes out."),
        ("Fault E-204", "E-204 means discharge temperature is too high: clean the cooler and check the oil level."),
        ("Safety", "Isolate and lock out the compressor and release all pressure before opening any panel."),
    ];
    let corpus: String = passages
        .iter()
        .enumerate()
        .map(|(i, (title, text))| {
            format!("{{\"_id\": \"d{i}\", \"title\": \"{title}\", \"text\": \"{text}\"}}\n")
        })
        .collect();
    std::fs::write(data.join("corpus.jsonl"), corpus).unwrap();
    let questions = [
        ("how often should the compressor oil be changed", true),
        ("what oil part number do I use", true),
        ("how tight should the fan belt be", true),
        ("when do I replace the air filter", true),
        ("how do I drain the condensate", true),
        ("what does fault E-204 mean", true),
        ("what must I do before opening a panel", true),
        (
            "the discharge temperature is too high, what should I clean",
            true,
        ),
        ("who won the football world cup in 1998", false),
        ("what is a good recipe for banana bread", false),
        ("how many moons does jupiter have", false),
        ("translate good morning into japanese", false),
    ];
    let queries: String = questions
        .iter()
        .enumerate()
        .map(|(i, (q, _))| format!("{{\"_id\": \"q{i}\", \"text\": \"{q}\"}}\n"))
        .collect();
    std::fs::write(data.join("queries.jsonl"), queries).unwrap();
    std::fs::write(
        data.join("qrels/test.tsv"),
        "query-id\tcorpus-id\tscore\nq0\td0\t1\n",
    )
    .unwrap();
    let json = dir.path().join("answerability.json");
    let svg = dir.path().join("reliability.svg");
    let args = |folds: &str| {
        vec![
            "eval".to_string(),
            "answerability".to_string(),
            "--data".to_string(),
            data.to_str().unwrap().to_string(),
            "--folds".to_string(),
            folds.to_string(),
            "--json".to_string(),
            json.to_str().unwrap().to_string(),
            "--svg".to_string(),
            svg.to_str().unwrap().to_string(),
            "--cache-dir".to_string(),
            "cache".to_string(),
        ]
    };
    // Without answerability.tsv: a clear error naming the file.
    let args2 = args("2");
    let refs: Vec<&str> = args2.iter().map(String::as_str).collect();
    let missing = scanaid(&refs, dir.path());
    assert!(!missing.status.success());
    assert!(
        text(&missing).contains("answerability.tsv"),
        "{}",
        text(&missing)
    );

    let labels: String = questions
        .iter()
        .enumerate()
        .map(|(i, (_, a))| format!("q{i}\t{}\n", u8::from(*a)))
        .collect();
    std::fs::write(
        data.join("answerability.tsv"),
        format!("query-id\tanswerable\n{labels}"),
    )
    .unwrap();
    let out = scanaid(&refs, dir.path());
    assert!(out.status.success(), "{}", text(&out));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    for key in [
        "n_queries",
        "auroc",
        "ece",
        "escalate_precision",
        "escalate_recall",
        "threshold",
    ] {
        assert!(report[key].is_number(), "missing {key} in {report}");
    }
    assert_eq!(report["n_queries"], 12);
    assert!(
        report["auroc"].as_f64().unwrap() >= 0.8,
        "off-topic questions get less confidence: {report}"
    );
    assert!(std::fs::read_to_string(&svg).unwrap().starts_with("<svg"));
    // One fold is no cross-validation.
    let args1 = args("1");
    let refs1: Vec<&str> = args1.iter().map(String::as_str).collect();
    let one = scanaid(&refs1, dir.path());
    assert!(!one.status.success());
    assert!(text(&one).contains("at least 2 folds"), "{}", text(&one));
}

#[test]
fn eval_answers_cites_every_sentence_and_keeps_steps_in_order() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("manuals")).unwrap();
    std::fs::write(dir.path().join("manuals/dw.md"), MANUAL).unwrap();
    std::fs::write(
        dir.path().join("questions.jsonl"),
        concat!(
            "{\"id\": \"a1\", \"question\": \"what does F-05 mean\", \"manual\": \"dw-500\", \"anchor\": \"fault-codes\"}\n",
            "{\"id\": \"a2\", \"question\": \"how do I descale the dishwasher\", \"manual\": \"dw-500\", \"anchor\": \"descaling\"}\n",
        ),
    )
    .unwrap();
    // Without --index, the eval builds its own index in the eval cache: never the server's
    // (`data/index`, or SCANAID_INDEX, which the server reads).
    let out = Command::new(env!("CARGO_BIN_EXE_scanaid"))
        .args([
            "eval",
            "answers",
            "--manuals",
            "manuals",
            "--questions",
            "questions.jsonl",
            "--json",
            "answers.json",
        ])
        .current_dir(dir.path())
        .env("SCANAID_EVAL_CACHE", dir.path().join("cache"))
        .env("SCANAID_INDEX", dir.path().join("served"))
        .output()
        .expect("the binary runs");
    assert!(out.status.success(), "{}", text(&out));
    assert!(!dir.path().join("data").exists() && !dir.path().join("served").exists());
    let built: Vec<String> = std::fs::read_dir(dir.path().join("cache"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        built.len() == 1 && built[0].starts_with("manuals-"),
        "{built:?}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("answers.json")).unwrap())
            .unwrap();
    assert_eq!(report["citation_coverage"], 1.0, "{report}");
    assert_eq!(report["cites_expected_section"], 1.0, "{report}");
    let fault = report["answers"][0]["answer"].as_array().unwrap();
    assert!(
        fault.iter().any(|s| s
            .as_str()
            .unwrap()
            .contains("| F-05 | Rinse water below 82 °C |")),
        "the row that answers, verbatim: {fault:?}"
    );
    let steps: Vec<&str> = report["answers"][1]["answer"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        vec![
            "1. Drain the tank. [1]",
            "2. Add 500 ml of descaler PN 7720-D. [1]"
        ],
        "the whole procedure, in order"
    );
}

/// One site, queue and asset (a dishwasher carrying `MANUAL`), for commands that read the registry.
const REGISTRY: &str = concat!(
    "[[site]]\nid = \"k\"\nname = \"Kitchen\"\ntimezone = \"Europe/Madrid\"\n\n",
    "[[queue]]\nid = \"q\"\nname = \"Service\"\nsite = \"k\"\n\n",
    "[[asset]]\nid = \"dw1\"\nname = \"Dishwasher\"\nmodel = \"DW-500H\"\nsite = \"k\"\nqueue = \"q\"\nmanuals = [\"dw-500\"]\n",
);

#[test]
fn eval_answerability_over_manuals_weighs_answerable_against_unanswerable_questions() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("manuals")).unwrap();
    std::fs::write(dir.path().join("manuals/dw.md"), MANUAL).unwrap();
    std::fs::write(
        dir.path().join("answerable.jsonl"),
        concat!(
            "{\"id\": \"a1\", \"question\": \"what does F-05 mean\", \"manual\": \"dw-500\", \"anchor\": \"fault-codes\"}\n",
            "{\"id\": \"a2\", \"question\": \"how do I descale the dishwasher\", \"manual\": \"dw-500\", \"anchor\": \"descaling\"}\n",
        ),
    )
    .unwrap();
    // A second file of answerable questions (as the Spanish set is beside the English one).
    std::fs::write(
        dir.path().join("answerable-2.jsonl"),
        concat!(
            "{\"id\": \"a3\", \"question\": \"which descaler part number\", \"manual\": \"dw-500\", \"anchor\": \"descaling\"}\n",
            "{\"id\": \"a4\", \"question\": \"rinse water temperature fault\", \"manual\": \"dw-500\", \"anchor\": \"fault-codes\"}\n",
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("unanswerable.jsonl"),
        concat!(
            "{\"id\": \"u1\", \"question\": \"who won the world cup in 1998\", \"kind\": \"off-topic\"}\n",
            "{\"id\": \"u2\", \"question\": \"what is the wifi password\", \"kind\": \"workplace\"}\n",
            "{\"id\": \"u3\", \"question\": \"best banana bread recipe\", \"kind\": \"off-topic\"}\n",
            "{\"id\": \"u4\", \"question\": \"how many moons does jupiter have\", \"kind\": \"off-topic\"}\n",
        ),
    )
    .unwrap();
    // Over the bundled-manual layout in `dir`: these questions, two folds, and `more`.
    let answerability = |dir: &std::path::Path, more: &[&str]| {
        let mut args = vec![
            "eval",
            "answerability",
            "--manuals",
            "manuals",
            "--index",
            "idx",
            "--questions",
            "answerable.jsonl",
            "--unanswerable",
            "unanswerable.jsonl",
            "--folds",
            "2",
        ];
        args.extend_from_slice(more);
        scanaid(&args, dir)
    };
    let out = answerability(
        dir.path(),
        &["--questions", "answerable-2.jsonl", "--json", "report.json"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("report.json")).unwrap())
            .unwrap();
    assert_eq!(report["n_queries"], 8);
    assert_eq!(report["n_answerable"], 4);
    assert!(
        report["bundled_model"]["auroc"].as_f64().unwrap() >= 0.75,
        "{report}"
    );
    assert!(report["auroc"].is_number() && report["ece"].is_number());

    // As the chat serves them: needs the folder's asset registry, and names it when it is missing.
    let as_served =
        |dir: &std::path::Path| answerability(dir, &["--as-served", "--json", "served.json"]);
    let missing = as_served(dir.path());
    assert!(!missing.status.success());
    assert!(text(&missing).contains("assets.toml"), "{}", text(&missing));
    std::fs::write(dir.path().join("manuals/assets.toml"), REGISTRY).unwrap();
    let served = as_served(dir.path());
    assert!(served.status.success(), "{}", text(&served));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("served.json")).unwrap())
            .unwrap();
    assert_eq!(report["n_queries"], 6, "{report}");
}

#[test]
fn the_chat_latency_benchmark_asks_over_http_and_reports_both_events() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("manuals")).unwrap();
    std::fs::write(dir.path().join("manuals/dw.md"), MANUAL).unwrap();
    std::fs::write(dir.path().join("manuals/assets.toml"), REGISTRY).unwrap();
    std::fs::write(
        dir.path().join("questions.jsonl"),
        concat!(
            "{\"id\": \"a1\", \"question\": \"what does F-05 mean\", \"manual\": \"dw-500\", \"anchor\": \"fault-codes\"}\n",
            "{\"id\": \"a2\", \"question\": \"how do I descale\", \"manual\": \"dw-500\", \"anchor\": \"descaling\"}\n",
            "{\"id\": \"a3\", \"question\": \"no asset has this manual\", \"manual\": \"other\", \"anchor\": \"x\"}\n",
        ),
    )
    .unwrap();
    let out = scanaid(
        &[
            "bench",
            "chat",
            "--manuals",
            "manuals",
            "--data",
            "data",
            "--questions",
            "questions.jsonl",
            "--rounds",
            "1",
            "--json",
            "chat.json",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("chat.json")).unwrap())
            .unwrap();
    assert_eq!(
        report["questions"], 2,
        "only questions about a registered asset: {report}"
    );
    assert_eq!(report["asked"], 2);
    let first = report["sse_first_event"]["p50_ms"].as_f64().unwrap();
    let full = report["sse_full_answer"]["p50_ms"].as_f64().unwrap();
    assert!(first > 0.0 && first <= full, "{report}");
    assert!(report["in_process"]["p50_ms"].as_f64().unwrap() > 0.0);
    assert!(report["json_full_answer"]["p95_ms"].as_f64().unwrap() > 0.0);
    assert!(text(&out).contains("SSE first event"));
}

/// The tuned MiniLM is the default, the published one is a flag away, and a bad delta file is an error
/// that names the file, never a panic.
#[test]
fn the_tuned_minilm_is_the_default_and_bad_deltas_are_clear_errors() {
    let out = scanaid(&["models", "fetch"], Path::new("."));
    assert!(
        out.status.success()
            && text(&out)
                .contains("all-MiniLM-L6-v2.scifact-train.delta: built into this binary, verified"),
        "{}",
        text(&out)
    );

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("tiny");
    std::fs::create_dir_all(data.join("qrels")).unwrap();
    std::fs::write(
        data.join("corpus.jsonl"),
        "{\"_id\": \"d1\", \"title\": \"Oil\", \"text\": \"Change the compressor oil every 4000 hours.\"}\n{\"_id\": \"d2\", \"title\": \"Belt\", \"text\": \"Check the fan belt tension monthly.\"}\n",
    )
    .unwrap();
    std::fs::write(
        data.join("queries.jsonl"),
        "{\"_id\": \"q1\", \"text\": \"how often is the oil changed\"}\n",
    )
    .unwrap();
    std::fs::write(
        data.join("qrels/test.tsv"),
        "query-id\tcorpus-id\tscore\nq1\td1\t1\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("bad.delta"), "this is not a delta").unwrap();
    let eval = |extra: &[&str], json: &str| {
        let mut args = vec![
            "eval",
            "retrieval",
            "--data",
            "tiny",
            "--mode",
            "dense",
            "--cache-dir",
            "cache",
            "--json",
            json,
        ];
        args.extend_from_slice(extra);
        scanaid(&args, dir.path())
    };
    let model_of = |json: &str| -> String {
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join(json)).unwrap()).unwrap();
        report["model"].as_str().unwrap().to_string()
    };

    let out = eval(&[], "tuned.json");
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        model_of("tuned.json").starts_with("all-MiniLM-L6-v2+delta-"),
        "{}",
        model_of("tuned.json")
    );
    let out = eval(&["--embedding-model", "minilm-base"], "base.json");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(model_of("base.json"), "all-MiniLM-L6-v2");

    let out = eval(&["--embedding-delta", "bad.delta"], "bad.json");
    let said = text(&out);
    assert!(
        !out.status.success()
            && said.contains("loading the encoder delta")
            && said.contains("bad.delta: not a safetensors file")
            && !said.contains("panicked"),
        "{said}"
    );
    let out = eval(
        &["--embedding-model", "e5", "--embedding-delta", "bad.delta"],
        "e5.json",
    );
    assert!(
        !out.status.success() && text(&out).contains("applies to `--embedding-model minilm` only"),
        "{}",
        text(&out)
    );
}

#[test]
fn index_and_search_use_the_data_directorys_index_as_serve_does() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("manuals")).unwrap();
    std::fs::write(dir.path().join("manuals/dw.md"), MANUAL).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_scanaid"))
        .args(["index", "--manuals", "manuals"])
        .current_dir(dir.path())
        .env("SCANAID_DATA", dir.path().join("site"))
        .env_remove("SCANAID_INDEX")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(dir.path().join("site/index/CURRENT").is_file());
    assert!(!dir.path().join("data").exists(), "not ./data/index");
    let out = scanaid(
        &["search", "--data", "site", "what does f05 mean"],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("F-05"), "{}", text(&out));
}
