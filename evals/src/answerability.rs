//! The answer-or-escalate evaluation: for every question with an answerability label, hybrid retrieval
//! (with the conversation), the evidence features, and a confidence model scored by k-fold
//! cross-validation, so no question is scored by a model fitted on it. Reports AUROC, calibration
//! (ECE and a reliability table), and the escalation precision/recall at a threshold that is itself
//! chosen on the training folds only.

use std::path::PathBuf;

use serde::Serialize;
use sha2::{Digest, Sha256};

use scanaid_assistant::confidence::{FitOptions, Logistic, ShippedModel};
use scanaid_assistant::{evidence, FEATURE_NAMES, N_FEATURES};
use scanaid_indexer::{Filters, Mode, OwnerScope, SearchIndex, SearchRequest};
use scanaid_models::Embedder;

use crate::beir::Dataset;
use crate::error::{EvalError, Result};
use crate::metrics::auroc;

pub struct AnswerabilityOptions<'a> {
    pub folds: usize,
    /// Also fit and score the bundled manuals' questions with a BEIR set (one model for both).
    pub with_manuals: Option<ManualSet<'a>>,
    /// Which evidence features the model uses (`FitOptions::default()` is the product's set).
    pub use_feature: [bool; N_FEATURES],
    pub use_history: bool,
    pub cache_dir: PathBuf,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReliabilityBin {
    pub from: f64,
    pub to: f64,
    pub n: usize,
    pub mean_confidence: f64,
    pub answerable_rate: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct AnswerabilityReport {
    pub dataset: String,
    pub n_queries: usize,
    pub n_answerable: usize,
    pub folds: usize,
    pub history: bool,
    /// Out-of-fold confidence against the labels (answerable = positive).
    pub auroc: f64,
    /// Expected calibration error over 10 equal-width bins, out of fold.
    pub ece: f64,
    /// The ECE a perfectly calibrated model would still show on this many questions with these
    /// confidences (mean over simulated label draws): the sampling noise floor to read `ece` against.
    pub ece_if_calibrated: f64,
    /// The 95th percentile of those draws: an `ece` below it is within what sampling alone gives a
    /// perfectly calibrated model on these questions.
    pub ece_if_calibrated_p95: f64,
    /// Features the model used.
    pub features: Vec<String>,
    /// Of the questions escalated, the share that were truly unanswerable (out of fold).
    pub escalate_precision: f64,
    /// Of the unanswerable questions, the share escalated (out of fold).
    pub escalate_recall: f64,
    /// The product threshold: escalate below it; chosen on all the data (the out-of-fold figures above
    /// use thresholds chosen on each fold's training part).
    pub threshold: f64,
    pub baseline_auroc: Baselines,
    /// The out-of-fold figures of each question set, when several were fitted together.
    pub parts: Vec<PartScore>,
    /// The model the product ships (assistant/confidence-model.json) judged on these questions as is,
    /// without refitting: how well it carries over (in-sample on the set it was fitted on).
    pub bundled_model: BundledModelScore,
    pub reliability: Vec<ReliabilityBin>,
    /// The model fitted on every question (what the product would ship), by feature name.
    pub weights: Vec<(String, f64)>,
    pub bias: f64,
    #[serde(skip)]
    pub model: Logistic,
}

#[derive(Debug, Clone, Serialize)]
pub struct PartScore {
    pub part: String,
    pub n_queries: usize,
    pub n_answerable: usize,
    pub auroc: f64,
    pub ece: f64,
    pub escalate_precision: f64,
    pub escalate_recall: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct BundledModelScore {
    pub auroc: f64,
    pub ece: f64,
    /// Share of the answerable questions it marks unsure.
    pub unsure_answerable: f64,
    /// Share of the unanswerable questions it marks unsure.
    pub unsure_unanswerable: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Baselines {
    pub top_cosine: f64,
    pub top_bm25: f64,
}

/// One labelled question's evidence.
struct Row {
    id: String,
    /// Which question set the row comes from (reports break the figures down by it).
    part: String,
    features: [f64; N_FEATURES],
    top_bm25: f64,
    answerable: bool,
}

pub fn evaluate(
    data: &Dataset,
    embedder: &dyn Embedder,
    options: &AnswerabilityOptions<'_>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<AnswerabilityReport> {
    let labels = data
        .answerability
        .as_ref()
        .ok_or_else(|| EvalError::Missing {
            path: data.dir.join("answerability.tsv"),
        })?;
    check_folds(options)?;
    let (index, _, _, _) =
        crate::retrieval::open_or_build(data, embedder, &options.cache_dir, progress)?;
    let mut rows = Vec::new();
    for q in &data.queries {
        let Some(&answerable) = labels.get(&q.id) else {
            continue;
        };
        let request = SearchRequest {
            limit: 20,
            ..crate::retrieval::request(q, Mode::Hybrid, options.use_history)
        };
        let mut r = row(&index, embedder, &q.id, request, answerable)?;
        r.part = data.name.clone();
        rows.push(r);
    }
    if let Some(manuals) = &options.with_manuals {
        rows.extend(manual_rows(manuals, embedder)?);
    }
    let (shipped, _) = ShippedModel::for_model(embedder.model_id());
    cross_validate(&data.name, rows, &shipped, options)
}

/// The bundled manuals' labelled questions, to fit and score together with a BEIR set.
pub struct ManualSet<'a> {
    pub index: &'a SearchIndex,
    pub answerable: &'a [crate::manual_questions::ManualQuestion],
    pub unanswerable: &'a [UnanswerableQuestion],
    /// Per question id, the filters the chat would search it with (`--as-served`: its asset's
    /// manuals, its reader's sections); a question without one is searched as a public reader of
    /// every manual.
    pub served_filters: &'a std::collections::HashMap<String, Filters>,
}

/// A question over the bundled manuals that they do not answer (`evals/data/manual-unanswerable.jsonl`).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct UnanswerableQuestion {
    pub id: String,
    pub question: String,
    #[serde(default)]
    pub kind: String,
    /// The asset whose label it was asked on (empty: none, or a patient's packet).
    #[serde(default)]
    pub asset: String,
}

pub fn load_unanswerable(path: &std::path::Path) -> Result<Vec<UnanswerableQuestion>> {
    crate::beir::jsonl(path)
}

/// The same evaluation over the bundled manuals: our answerable question set against questions the
/// manuals do not answer, retrieved as the server would for a public reader.
pub fn evaluate_manuals(
    manuals: &ManualSet<'_>,
    embedder: &dyn Embedder,
    options: &AnswerabilityOptions,
) -> Result<AnswerabilityReport> {
    check_folds(options)?;
    let (shipped, _) = ShippedModel::for_model(embedder.model_id());
    let rows = manual_rows(manuals, embedder)?;
    let mut report = cross_validate("bundled manuals", rows, &shipped, options)?;
    report.history = false; // single questions, no conversations
    Ok(report)
}

fn manual_rows(manuals: &ManualSet<'_>, embedder: &dyn Embedder) -> Result<Vec<Row>> {
    let request = |id: &str, text: &str| SearchRequest {
        query: text.to_string(),
        history: Vec::new(),
        filters: manuals
            .served_filters
            .get(id)
            .cloned()
            .unwrap_or_else(|| Filters {
                owner: OwnerScope::Public,
                ..Filters::default()
            }),
        limit: 20,
        mode: Mode::Hybrid,
        language: None,
    };
    let labelled = manuals
        .answerable
        .iter()
        .map(|q| (&q.id, &q.question, true))
        .chain(
            manuals
                .unanswerable
                .iter()
                .map(|q| (&q.id, &q.question, false)),
        );
    let mut rows = Vec::new();
    for (id, question, answerable) in labelled {
        let mut r = row(
            manuals.index,
            embedder,
            id,
            request(id, question),
            answerable,
        )?;
        r.part = "bundled manuals".to_string();
        rows.push(r);
    }
    Ok(rows)
}

fn check_folds(options: &AnswerabilityOptions<'_>) -> Result<()> {
    if options.folds < 2 {
        return Err(EvalError::BadOption(
            "cross-validation needs at least 2 folds".to_string(),
        ));
    }
    Ok(())
}

fn row(
    index: &SearchIndex,
    embedder: &dyn Embedder,
    id: &str,
    request: SearchRequest,
    answerable: bool,
) -> Result<Row> {
    let hits = index.search(&request, Some(embedder))?;
    let top_bm25 = hits
        .iter()
        .filter_map(|h| h.bm25.map(|b| b.score as f64))
        .fold(0.0, f64::max);
    Ok(Row {
        id: id.to_string(),
        part: String::new(),
        features: evidence(index, &request, &hits).values,
        top_bm25,
        answerable,
    })
}

/// Scores `rows` by k-fold cross-validation (see the module comment), and `shipped` (the product's
/// model for the embedder the rows came from) as it is.
fn cross_validate(
    name: &str,
    rows: Vec<Row>,
    shipped: &ShippedModel,
    options: &AnswerabilityOptions<'_>,
) -> Result<AnswerabilityReport> {
    let n_answerable = rows.iter().filter(|r| r.answerable).count();
    if n_answerable == 0 || n_answerable == rows.len() {
        return Err(EvalError::BadOption(
            "answerability needs questions of both labels".to_string(),
        ));
    }

    let fit_options = FitOptions {
        use_feature: options.use_feature,
        ..FitOptions::default()
    };
    let fold_of = stratified_folds(&rows, options.folds);
    let mut out_of_fold = vec![0.0; rows.len()];
    let mut escalated = vec![false; rows.len()];
    for fold in 0..options.folds {
        let train: Vec<&Row> = rows
            .iter()
            .zip(&fold_of)
            .filter(|(_, &f)| f != fold)
            .map(|(r, _)| r)
            .collect();
        let model = fit(&train, fit_options);
        let threshold = best_threshold(
            &train
                .iter()
                .map(|r| model.predict(&r.features))
                .collect::<Vec<_>>(),
            &train.iter().map(|r| r.answerable).collect::<Vec<_>>(),
        );
        for (i, row) in rows.iter().enumerate() {
            if fold_of[i] == fold {
                out_of_fold[i] = model.predict(&row.features);
                escalated[i] = out_of_fold[i] < threshold;
            }
        }
    }
    let truth: Vec<bool> = rows.iter().map(|r| r.answerable).collect();
    let bundled = shipped;
    let bundled_confidence: Vec<f64> = rows
        .iter()
        .map(|r| bundled.model.predict(&r.features))
        .collect();
    let unsure_share = |answerable: bool| {
        let of: Vec<f64> = bundled_confidence
            .iter()
            .zip(&truth)
            .filter(|(_, &t)| t == answerable)
            .map(|(&c, _)| c)
            .collect();
        of.iter().filter(|&&c| c < bundled.threshold).count() as f64 / of.len().max(1) as f64
    };
    let bundled_model = BundledModelScore {
        auroc: auroc(&bundled_confidence, &truth),
        ece: expected_calibration_error(&reliability(&bundled_confidence, &truth, 10), rows.len()),
        unsure_answerable: unsure_share(true),
        unsure_unanswerable: unsure_share(false),
    };
    let (precision, recall) = escalation_precision_recall(&escalated, &truth);
    let full = fit(&rows.iter().collect::<Vec<_>>(), fit_options);
    let full_predictions: Vec<f64> = rows.iter().map(|r| full.predict(&r.features)).collect();
    let reliability = reliability(&out_of_fold, &truth, 10);
    let noise = calibrated_ece_noise(&out_of_fold, 2000);
    Ok(AnswerabilityReport {
        dataset: name.to_string(),
        n_queries: rows.len(),
        n_answerable,
        folds: options.folds,
        history: options.use_history,
        auroc: auroc(&out_of_fold, &truth),
        ece: expected_calibration_error(&reliability, rows.len()),
        ece_if_calibrated: noise.0,
        ece_if_calibrated_p95: noise.1,
        features: FEATURE_NAMES
            .iter()
            .zip(options.use_feature)
            .filter(|(_, used)| *used)
            .map(|(n, _)| n.to_string())
            .collect(),
        escalate_precision: precision,
        escalate_recall: recall,
        threshold: best_threshold(&full_predictions, &truth),
        baseline_auroc: Baselines {
            top_cosine: auroc(
                &rows.iter().map(|r| r.features[0]).collect::<Vec<_>>(),
                &truth,
            ),
            top_bm25: auroc(&rows.iter().map(|r| r.top_bm25).collect::<Vec<_>>(), &truth),
        },
        parts: {
            let mut names: Vec<&str> = rows.iter().map(|r| r.part.as_str()).collect();
            names.sort();
            names.dedup();
            names
                .into_iter()
                .map(|part| {
                    let idx: Vec<usize> =
                        (0..rows.len()).filter(|&i| rows[i].part == part).collect();
                    let conf: Vec<f64> = idx.iter().map(|&i| out_of_fold[i]).collect();
                    let t: Vec<bool> = idx.iter().map(|&i| truth[i]).collect();
                    let e: Vec<bool> = idx.iter().map(|&i| escalated[i]).collect();
                    let (p, r) = escalation_precision_recall(&e, &t);
                    PartScore {
                        part: part.to_string(),
                        n_queries: idx.len(),
                        n_answerable: t.iter().filter(|&&a| a).count(),
                        auroc: auroc(&conf, &t),
                        ece: expected_calibration_error(
                            &self::reliability(&conf, &t, 10),
                            idx.len(),
                        ),
                        escalate_precision: p,
                        escalate_recall: r,
                    }
                })
                .collect()
        },
        reliability,
        bundled_model,
        weights: FEATURE_NAMES
            .iter()
            .zip(full.weights)
            .map(|(n, w)| (n.to_string(), w))
            .collect(),
        bias: full.bias,
        model: full,
    })
}

fn fit(rows: &[&Row], options: FitOptions) -> Logistic {
    let x: Vec<[f64; N_FEATURES]> = rows.iter().map(|r| r.features).collect();
    let y: Vec<bool> = rows.iter().map(|r| r.answerable).collect();
    Logistic::fit(&x, &y, options)
}

/// Folds with each label spread evenly, in an order fixed by a hash of the question id (so a
/// conversation's turns, which sit next to each other in the file, do not all land in one fold).
fn stratified_folds(rows: &[Row], folds: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..rows.len()).collect();
    let key = |i: usize| {
        let digest = Sha256::digest(rows[i].id.as_bytes());
        (
            rows[i].answerable,
            u64::from_le_bytes(digest[..8].try_into().expect("8 bytes")),
        )
    };
    order.sort_by_key(|&i| key(i));
    let mut fold_of = vec![0; rows.len()];
    for (position, &i) in order.iter().enumerate() {
        fold_of[i] = position % folds;
    }
    fold_of
}

/// The escalation threshold with the best F1 for "unanswerable" (escalate when confidence is below it).
pub fn best_threshold(confidence: &[f64], answerable: &[bool]) -> f64 {
    let mut candidates: Vec<f64> = confidence.to_vec();
    candidates.sort_by(|a, b| a.total_cmp(b));
    candidates.dedup();
    let mut best = (f64::MIN, 0.5);
    for (i, &c) in candidates.iter().enumerate() {
        // Midway to the next value, so the threshold generalises instead of sitting on a point.
        let t = match candidates.get(i + 1) {
            Some(next) => (c + next) / 2.0,
            None => c + 1e-9,
        };
        let escalated: Vec<bool> = confidence.iter().map(|&p| p < t).collect();
        let (p, r) = escalation_precision_recall(&escalated, answerable);
        let f1 = if p + r > 0.0 {
            2.0 * p * r / (p + r)
        } else {
            0.0
        };
        if f1 > best.0 {
            best = (f1, t);
        }
    }
    best.1
}

/// Precision and recall of escalating, where the unanswerable questions are the ones to escalate.
pub fn escalation_precision_recall(escalated: &[bool], answerable: &[bool]) -> (f64, f64) {
    let hits = escalated
        .iter()
        .zip(answerable)
        .filter(|(&e, &a)| e && !a)
        .count() as f64;
    let n_escalated = escalated.iter().filter(|&&e| e).count() as f64;
    let n_unanswerable = answerable.iter().filter(|&&a| !a).count() as f64;
    let precision = if n_escalated > 0.0 {
        hits / n_escalated
    } else {
        0.0
    };
    let recall = if n_unanswerable > 0.0 {
        hits / n_unanswerable
    } else {
        0.0
    };
    (precision, recall)
}

/// Equal-width confidence bins with their mean confidence and answerable rate.
pub fn reliability(confidence: &[f64], answerable: &[bool], bins: usize) -> Vec<ReliabilityBin> {
    (0..bins)
        .map(|b| {
            let from = b as f64 / bins as f64;
            let to = (b + 1) as f64 / bins as f64;
            let members: Vec<usize> = (0..confidence.len())
                .filter(|&i| {
                    let c = confidence[i];
                    c >= from && (c < to || (b + 1 == bins && c <= to))
                })
                .collect();
            let n = members.len();
            let mean = |f: &dyn Fn(usize) -> f64| {
                if n == 0 {
                    0.0
                } else {
                    members.iter().map(|&i| f(i)).sum::<f64>() / n as f64
                }
            };
            ReliabilityBin {
                from,
                to,
                n,
                mean_confidence: mean(&|i| confidence[i]),
                answerable_rate: mean(&|i| f64::from(u8::from(answerable[i]))),
            }
        })
        .collect()
}

/// ECE: the bins' gaps between confidence and the answerable rate, weighted by their share.
pub fn expected_calibration_error(bins: &[ReliabilityBin], total: usize) -> f64 {
    bins.iter()
        .map(|b| b.n as f64 / total.max(1) as f64 * (b.mean_confidence - b.answerable_rate).abs())
        .sum()
}

/// Mean ECE of `confidence` against labels drawn from it (each question answerable with probability
/// equal to its confidence), over `draws` draws from a fixed-seed generator.
pub fn calibrated_ece_floor(confidence: &[f64], draws: usize) -> f64 {
    calibrated_ece_noise(confidence, draws).0
}

/// (mean, 95th percentile) of the ECE of `confidence` against labels drawn from it, over `draws`
/// draws from a fixed-seed generator.
pub fn calibrated_ece_noise(confidence: &[f64], draws: usize) -> (f64, f64) {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut uniform = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut eces: Vec<f64> = (0..draws)
        .map(|_| {
            let labels: Vec<bool> = confidence.iter().map(|&c| uniform() < c).collect();
            expected_calibration_error(&reliability(confidence, &labels, 10), confidence.len())
        })
        .collect();
    if eces.is_empty() {
        return (0.0, 0.0);
    }
    eces.sort_by(|a, b| a.total_cmp(b));
    let mean = eces.iter().sum::<f64>() / eces.len() as f64;
    let p95 = eces[((eces.len() as f64 * 0.95).ceil() as usize).clamp(1, eces.len()) - 1];
    (mean, p95)
}

/// A reliability diagram as a small standalone SVG: one bar per bin at its answerable rate, a dot at
/// its mean confidence, and the diagonal a calibrated model follows.
pub fn reliability_svg(report: &AnswerabilityReport) -> String {
    let (w, h, pad) = (360.0, 360.0, 40.0);
    let plot = w - 2.0 * pad;
    let x = |v: f64| pad + v * plot;
    let y = |v: f64| h - pad - v * plot;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"{w}\" height=\"{h}\" fill=\"white\"/>\n"
    );
    s.push_str(&format!(
        "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#999\" stroke-dasharray=\"4 3\"/>\n",
        x(0.0),
        y(0.0),
        x(1.0),
        y(1.0)
    ));
    for b in report.reliability.iter().filter(|b| b.n > 0) {
        s.push_str(&format!(
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#4a7bb7\" fill-opacity=\"0.55\"><title>{:.1}-{:.1}: {} questions, {:.0}% answerable</title></rect>\n",
            x(b.from) + 1.0,
            y(b.answerable_rate),
            (b.to - b.from) * plot - 2.0,
            b.answerable_rate * plot,
            b.from,
            b.to,
            b.n,
            100.0 * b.answerable_rate
        ));
        s.push_str(&format!(
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"#c0392b\"/>\n",
            x(b.mean_confidence),
            y(b.answerable_rate)
        ));
    }
    s.push_str(&format!(
        "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#222\"/><line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#222\"/>\n",
        x(0.0), y(0.0), x(1.0), y(0.0), x(0.0), y(0.0), x(0.0), y(1.0)
    ));
    for tick in [0.0, 0.5, 1.0] {
        s.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{tick}</text><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{tick}</text>\n",
            x(tick),
            y(0.0) + 14.0,
            x(0.0) - 4.0,
            y(tick) + 4.0
        ));
    }
    s.push_str(&format!(
        "<line x1=\"{:.1}\" y1=\"{}\" x2=\"{:.1}\" y2=\"{}\" stroke=\"#e67e22\" stroke-width=\"2\"/>\n",
        x(report.threshold),
        y(0.0),
        x(report.threshold),
        y(1.0)
    ));
    s.push_str(&format!(
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">confidence (out of fold)</text>\n<text x=\"12\" y=\"{}\" transform=\"rotate(-90 12 {})\" text-anchor=\"middle\">share answerable</text>\n<text x=\"{}\" y=\"20\" text-anchor=\"middle\">{}: AUROC {:.3}, ECE {:.3}, threshold {:.2}</text>\n</svg>\n",
        w / 2.0,
        h - 8.0,
        h / 2.0,
        h / 2.0,
        w / 2.0,
        report.dataset,
        report.auroc,
        report.ece,
        report.threshold
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precision_and_recall_of_escalating_by_hand() {
        // Unanswerable: 0 and 1. Escalated: 0 and 2. One right of two escalated; one of two found.
        let escalated = [true, false, true, false];
        let answerable = [false, false, true, true];
        assert_eq!(
            escalation_precision_recall(&escalated, &answerable),
            (0.5, 0.5)
        );
    }

    #[test]
    fn a_perfectly_calibrated_set_has_zero_ece_and_a_wrong_one_does_not() {
        // Bin 0.2-0.3: confidence 0.25, one in four answerable. Bin 0.7-0.8: 0.75, three in four.
        let confidence = [0.25, 0.25, 0.25, 0.25, 0.75, 0.75, 0.75, 0.75];
        let answerable = [true, false, false, false, true, true, true, false];
        let bins = reliability(&confidence, &answerable, 10);
        assert!(expected_calibration_error(&bins, 8) < 1e-12);
        let wrong = [false, false, false, false, true, true, true, true];
        let bins = reliability(&confidence, &wrong, 10);
        // Each half is off by 0.25.
        assert!((expected_calibration_error(&bins, 8) - 0.25).abs() < 1e-12);
    }

    #[test]
    fn the_noise_floor_shrinks_with_more_questions() {
        let few: Vec<f64> = (0..40).map(|i| (i % 10) as f64 / 10.0 + 0.05).collect();
        let many: Vec<f64> = (0..4000).map(|i| (i % 10) as f64 / 10.0 + 0.05).collect();
        let (a, b) = (
            calibrated_ece_floor(&few, 300),
            calibrated_ece_floor(&many, 300),
        );
        assert!(a > 0.05 && b < 0.02 && b < a, "{a} {b}");
        let (mean, p95) = calibrated_ece_noise(&few, 300);
        assert_eq!(mean, a, "the same draws");
        assert!(p95 > mean && p95 < 1.0, "{mean} {p95}");
    }

    #[test]
    fn the_threshold_separates_when_the_confidence_does() {
        let confidence = [0.1, 0.2, 0.3, 0.8, 0.9];
        let answerable = [false, false, false, true, true];
        let t = best_threshold(&confidence, &answerable);
        assert!(t > 0.3 && t < 0.8, "{t}");
    }
}
