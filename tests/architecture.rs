//! Keeps the architecture invariants of ARCHITECTURE.md true: dependencies flow one way
//! (models <- indexer <- assistant <- server; evals uses indexer and models), and the engine crates
//! know nothing of HTTP.

fn dependencies(crate_dir: &str) -> Vec<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(crate_dir)
        .join("Cargo.toml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let mut in_deps = false;
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            // Only normal dependencies count; dev-dependencies may use anything for tests.
            in_deps = line == "[dependencies]";
            continue;
        }
        if in_deps {
            if let Some((name, _)) = line.split_once(['=', '.']) {
                let name = name.trim();
                if !name.is_empty() && !name.starts_with('#') {
                    out.push(name.to_string());
                }
            }
        }
    }
    out
}

fn check_none(crate_dir: &str, forbidden: &[&str]) {
    let deps = dependencies(crate_dir);
    assert!(!deps.is_empty(), "{crate_dir} has dependencies to check");
    for f in forbidden {
        assert!(
            !deps.iter().any(|d| d == f),
            "{crate_dir} must not depend on {f} (ARCHITECTURE.md)"
        );
    }
}

const WEB: &[&str] = &[
    "axum", "tokio", "hyper", "tower", "askama", "sqlx", "rusqlite",
];

#[test]
fn the_manifest_reader_sees_real_dependencies() {
    // Guards the checks below against passing because nothing was read.
    assert!(dependencies("indexer").iter().any(|d| d == "tantivy"));
    assert!(dependencies("indexer")
        .iter()
        .any(|d| d == "scanaid-models"));
    assert!(dependencies("models").iter().any(|d| d == "candle-core"));
}

#[test]
fn models_know_no_index_and_no_http() {
    check_none(
        "models",
        &[
            "scanaid-indexer",
            "scanaid-evals",
            "scanaid-server",
            "tantivy",
            "hnsw_rs",
        ],
    );
    check_none("models", WEB);
}

#[test]
fn the_indexer_knows_no_http_and_no_evals() {
    check_none("indexer", &["scanaid-evals", "scanaid-server"]);
    check_none("indexer", WEB);
}

#[test]
fn the_assistant_uses_the_indexer_and_knows_no_http() {
    assert!(dependencies("assistant")
        .iter()
        .any(|d| d == "scanaid-indexer"));
    check_none("assistant", WEB);
    check_none("assistant", &["scanaid-server", "scanaid-evals"]);
}

#[test]
fn evals_stay_off_the_web_layer() {
    check_none("evals", WEB);
    check_none("evals", &["scanaid-server"]);
}

#[test]
fn the_server_uses_the_engine_and_the_engine_not_the_server() {
    let deps = dependencies("server");
    assert!(deps.iter().any(|d| d == "scanaid-indexer"));
    assert!(deps.iter().any(|d| d == "axum"));
    check_none("server", &["scanaid-evals", "candle-core", "tantivy"]);
}
