//! Answers over the bundled manuals: for each question of our set, hybrid retrieval and the extractive
//! answer, scored for citation coverage (each answer sentence found verbatim in the passage it cites),
//! whether the answer cites the section the question expects, and latency.

use std::time::Instant;

use serde::Serialize;

use scanaid_assistant::extract;
use scanaid_indexer::{Filters, Mode, OwnerScope, SearchIndex, SearchRequest};
use scanaid_models::Embedder;

use crate::beir::Dataset;
use crate::error::Result;
use crate::manual_questions::ManualQuestion;
use crate::metrics::percentile;
use crate::retrieval::Latency;

#[derive(Debug, Clone, Serialize)]
pub struct SampleAnswer {
    pub id: String,
    pub question: String,
    pub expected: String,
    /// Sentences with their citation numbers, as a chat would show them.
    pub answer: Vec<String>,
    pub cited: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AnswersReport {
    pub n_questions: usize,
    pub n_sentences: usize,
    /// Share of answer sentences whose cited passage contains them verbatim.
    pub citation_coverage: f64,
    /// Share of questions whose answer cites the expected section.
    pub cites_expected_section: f64,
    /// Share of questions whose first answer sentence comes from the expected section.
    pub first_sentence_from_expected_section: f64,
    pub mean_sentences: f64,
    /// The shipped confidence model on these (answerable) questions: its mean, and the share it would
    /// mark unsure and hand to a person.
    pub mean_confidence: f64,
    pub unsure_share: f64,
    /// Question to full answer: retrieval plus extraction.
    pub latency_ms: Latency,
    /// Extraction alone.
    pub extract_latency_ms: Latency,
    pub answers: Vec<SampleAnswer>,
}

/// A question to answer and what a right answer cites.
#[derive(Debug, Clone)]
pub struct AnswerQuestion {
    pub id: String,
    pub question: String,
    pub history: Vec<String>,
    /// Keys of the passages a right answer cites: `manual#anchor` for manuals, passage ids for BEIR.
    pub expected: Vec<String>,
    pub by_passage_id: bool,
}

/// Our question set over the bundled manuals.
pub fn from_manual_questions(questions: &[ManualQuestion]) -> Vec<AnswerQuestion> {
    questions
        .iter()
        .map(|q| AnswerQuestion {
            id: q.id.clone(),
            question: q.question.clone(),
            history: Vec::new(),
            expected: vec![format!("{}#{}", q.manual, q.anchor)],
            by_passage_id: false,
        })
        .collect()
}

/// A BEIR folder's judged questions (answerable ones only, where the folder says).
pub fn from_dataset(data: &Dataset) -> Vec<AnswerQuestion> {
    data.queries
        .iter()
        .filter(|q| {
            data.answerability
                .as_ref()
                .is_none_or(|a| a.get(&q.id).copied().unwrap_or(true))
        })
        .filter_map(|q| {
            let relevant: Vec<String> = data
                .qrels
                .get(&q.id)?
                .iter()
                .filter(|(_, &s)| s > 0)
                .map(|(id, _)| id.clone())
                .collect();
            (!relevant.is_empty()).then(|| AnswerQuestion {
                id: q.id.clone(),
                question: q.text.clone(),
                history: q.history.clone(),
                expected: relevant,
                by_passage_id: true,
            })
        })
        .collect()
}

pub fn evaluate(
    index: &SearchIndex,
    embedder: &dyn Embedder,
    questions: &[AnswerQuestion],
    model: &scanaid_assistant::confidence::ShippedModel,
) -> Result<AnswersReport> {
    let (mut total, mut extract_ms) = (Vec::new(), Vec::new());
    let (mut n_sentences, mut covered, mut cites_expected, mut first_expected) = (0, 0, 0, 0);
    let mut answers = Vec::new();
    let (mut confidences, mut unsure) = (Vec::new(), 0usize);
    for q in questions {
        let request = SearchRequest {
            query: q.question.clone(),
            history: q.history.clone(),
            filters: Filters {
                owner: if q.by_passage_id {
                    OwnerScope::Everything
                } else {
                    OwnerScope::Public
                },
                ..Filters::default()
            },
            limit: 10,
            mode: Mode::Hybrid,
            language: None,
        };
        let started = Instant::now();
        let hits = index.search(&request, Some(embedder))?;
        let extracting = Instant::now();
        let answer = extract(index, &q.question, &hits);
        extract_ms.push(extracting.elapsed().as_secs_f64() * 1000.0);
        total.push(started.elapsed().as_secs_f64() * 1000.0);
        let confidence = if hits.is_empty() {
            0.0
        } else {
            model
                .model
                .predict(&scanaid_assistant::evidence(index, &request, &hits).values)
        };
        confidences.push(confidence);
        if confidence < model.threshold {
            unsure += 1;
        }

        let expected = |c: &scanaid_assistant::Citation| {
            if q.by_passage_id {
                c.ords
                    .iter()
                    .any(|&ord| q.expected.contains(&index.chunk(ord).chunk_id))
            } else {
                q.expected
                    .contains(&format!("{}#{}", c.manual_id, c.anchor))
            }
        };
        for s in &answer.sentences {
            n_sentences += 1;
            let cited = &answer.citations[s.citation - 1];
            if cited.ords.contains(&s.ord) && index.chunk(s.ord).text.contains(&s.text) {
                covered += 1;
            }
        }
        if answer.citations.iter().any(&expected) {
            cites_expected += 1;
        }
        if let Some(first) = answer.sentences.first() {
            if expected(&answer.citations[first.citation - 1]) {
                first_expected += 1;
            }
        }
        answers.push(SampleAnswer {
            id: q.id.clone(),
            question: q.question.clone(),
            expected: q.expected.join(" "),
            answer: answer
                .sentences
                .iter()
                .map(|s| {
                    format!(
                        "{} [{}]",
                        scanaid_assistant::answer::one_line(&s.text),
                        s.citation
                    )
                })
                .collect(),
            cited: answer
                .citations
                .iter()
                .map(|c| match c.ords.len() {
                    1 => format!("[{}] {}#{} ({})", c.n, c.manual_id, c.anchor, c.section),
                    n => format!(
                        "[{}] {}#{} ({}; {n} passages)",
                        c.n, c.manual_id, c.anchor, c.section
                    ),
                })
                .collect(),
        });
    }
    let n = questions.len().max(1) as f64;
    let latency = |v: &[f64]| Latency {
        p50: percentile(v, 50.0),
        p95: percentile(v, 95.0),
        mean: v.iter().sum::<f64>() / v.len().max(1) as f64,
    };
    Ok(AnswersReport {
        n_questions: questions.len(),
        n_sentences,
        citation_coverage: if n_sentences == 0 {
            0.0
        } else {
            covered as f64 / n_sentences as f64
        },
        cites_expected_section: cites_expected as f64 / n,
        first_sentence_from_expected_section: first_expected as f64 / n,
        mean_sentences: n_sentences as f64 / n,
        mean_confidence: confidences.iter().sum::<f64>() / n,
        unsure_share: unsure as f64 / n,
        latency_ms: latency(&total),
        extract_latency_ms: latency(&extract_ms),
        answers,
    })
}
