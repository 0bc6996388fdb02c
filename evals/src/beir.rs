//! Loading a BEIR-layout folder: `corpus.jsonl`, `queries.jsonl` (optionally with `history`),
//! `qrels/<split>.tsv`, and `answerability.tsv` where present. Every malformed line is an error that
//! names the file and line.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{EvalError, Result};

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Passage {
    #[serde(rename = "_id")]
    pub id: String,
    #[serde(default)]
    pub title: String,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Query {
    #[serde(rename = "_id")]
    pub id: String,
    pub text: String,
    #[serde(default)]
    pub history: Vec<String>,
}

/// query id -> (passage id -> graded relevance).
pub type Qrels = HashMap<String, HashMap<String, i32>>;

#[derive(Debug, Clone)]
pub struct Dataset {
    pub dir: PathBuf,
    pub name: String,
    pub corpus: Vec<Passage>,
    pub queries: Vec<Query>,
    pub qrels: Qrels,
    /// query id -> answerable (true) or should escalate (false), when the folder has it.
    pub answerability: Option<HashMap<String, bool>>,
}

fn read(path: &Path) -> Result<String> {
    if !path.is_file() {
        return Err(EvalError::Missing {
            path: path.to_path_buf(),
        });
    }
    std::fs::read_to_string(path).map_err(|source| EvalError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// One record per non-empty line; a bad line is an error naming the file and line.
pub(crate) fn jsonl<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Vec<T>> {
    let text = read(path)?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        out.push(
            serde_json::from_str(line).map_err(|e| EvalError::Malformed {
                path: path.to_path_buf(),
                line: i + 1,
                message: format!("not a valid record: {e}"),
            })?,
        );
    }
    Ok(out)
}

/// Rows of a TSV with a header line, as (line number, columns).
fn tsv(path: &Path, columns: usize) -> Result<Vec<(usize, Vec<String>)>> {
    let text = read(path)?;
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let cols: Vec<String> = line.split('\t').map(|c| c.trim().to_string()).collect();
        if cols.len() < columns {
            return Err(EvalError::Malformed {
                path: path.to_path_buf(),
                line: i + 1,
                message: format!(
                    "expected {columns} tab-separated columns, found {}",
                    cols.len()
                ),
            });
        }
        rows.push((i + 1, cols));
    }
    Ok(rows)
}

/// Loads a BEIR folder with the qrels of `split`.
pub fn load(dir: &Path, split: &str) -> Result<Dataset> {
    let corpus_path = dir.join("corpus.jsonl");
    let corpus: Vec<Passage> = jsonl(&corpus_path)?;
    let queries: Vec<Query> = jsonl(&dir.join("queries.jsonl"))?;
    let doc_ids: HashSet<&str> = corpus.iter().map(|p| p.id.as_str()).collect();
    let query_ids: HashSet<&str> = queries.iter().map(|q| q.id.as_str()).collect();
    let qrels_path = dir.join("qrels").join(format!("{split}.tsv"));
    let mut qrels: Qrels = HashMap::new();
    for (line, cols) in tsv(&qrels_path, 3)? {
        let malformed = |message: String| EvalError::Malformed {
            path: qrels_path.clone(),
            line,
            message,
        };
        let score: f64 = cols[2]
            .parse()
            .map_err(|_| malformed(format!("score {:?} is not a number", cols[2])))?;
        if !query_ids.contains(cols[0].as_str()) {
            return Err(malformed(format!(
                "query id {:?} is not in queries.jsonl",
                cols[0]
            )));
        }
        if !doc_ids.contains(cols[1].as_str()) {
            return Err(malformed(format!(
                "corpus id {:?} is not in corpus.jsonl",
                cols[1]
            )));
        }
        qrels
            .entry(cols[0].clone())
            .or_default()
            .insert(cols[1].clone(), score as i32);
    }
    let answerability_path = dir.join("answerability.tsv");
    let answerability = if answerability_path.is_file() {
        let mut map = HashMap::new();
        for (line, cols) in tsv(&answerability_path, 2)? {
            let value = match cols[1].as_str() {
                "1" => true,
                "0" => false,
                other => {
                    return Err(EvalError::Malformed {
                        path: answerability_path.clone(),
                        line,
                        message: format!("answerable must be 0 or 1, found {other:?}"),
                    })
                }
            };
            map.insert(cols[0].clone(), value);
        }
        Some(map)
    } else {
        None
    };
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "dataset".to_string());
    Ok(Dataset {
        dir: dir.to_path_buf(),
        name,
        corpus,
        queries,
        qrels,
        answerability,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(corpus: &str, queries: &str, qrels: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("corpus.jsonl"), corpus).unwrap();
        std::fs::write(dir.path().join("queries.jsonl"), queries).unwrap();
        std::fs::create_dir(dir.path().join("qrels")).unwrap();
        std::fs::write(dir.path().join("qrels/test.tsv"), qrels).unwrap();
        dir
    }

    const CORPUS: &str = "{\"_id\": \"d1\", \"title\": \"T\", \"text\": \"x\"}\n{\"_id\": \"d2\", \"text\": \"y\"}\n";
    const QUERIES: &str = "{\"_id\": \"q1\", \"text\": \"what\", \"history\": [\"user: hi\"]}\n";

    #[test]
    fn loads_a_good_folder() {
        let dir = folder(CORPUS, QUERIES, "query-id\tcorpus-id\tscore\nq1\td2\t2\n");
        let data = load(dir.path(), "test").unwrap();
        assert_eq!(data.corpus.len(), 2);
        assert_eq!(data.queries[0].history, vec!["user: hi"]);
        assert_eq!(data.qrels["q1"]["d2"], 2);
        assert!(data.answerability.is_none());
    }

    fn check_err(dir: &tempfile::TempDir, split: &str, expect: &str) {
        let err = load(dir.path(), split).unwrap_err().to_string();
        assert!(err.contains(expect), "expected {expect:?} in {err:?}");
    }

    #[test]
    fn bad_data_names_file_and_line() {
        let dir = folder(CORPUS, QUERIES, "h\nq1\td9\t1\n");
        check_err(
            &dir,
            "test",
            "test.tsv:2: corpus id \"d9\" is not in corpus.jsonl",
        );
        let dir = folder(CORPUS, QUERIES, "h\nq7\td1\t1\n");
        check_err(&dir, "test", "test.tsv:2: query id \"q7\"");
        let dir = folder(CORPUS, QUERIES, "h\nq1\td1\n");
        check_err(&dir, "test", "test.tsv:2: expected 3 tab-separated columns");
        let dir = folder(CORPUS, QUERIES, "h\nq1\td1\thigh\n");
        check_err(&dir, "test", "score \"high\" is not a number");
        let dir = folder(
            "{\"_id\": \"d1\", \"text\": \"x\"}\n{oops\n",
            QUERIES,
            "h\n",
        );
        check_err(&dir, "test", "corpus.jsonl:2: not a valid record");
        let dir = folder(CORPUS, QUERIES, "h\n");
        check_err(&dir, "train", "train.tsv: missing");
    }
}
