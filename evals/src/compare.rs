//! Paired comparison of two retrieval runs on the same queries (`scanaid eval compare`): is a change's
//! difference in mean nDCG@10 larger than what the choice of queries alone would give?
//!
//! Two standard tests for IR runs (Smucker, Allan and Carterette, "A Comparison of Statistical
//! Significance Tests for Information Retrieval Evaluation", CIKM 2007): a paired bootstrap
//! confidence interval of the mean difference, and a paired randomisation (sign-flip) test. Both
//! are seeded, so the same two reports always print the same figures.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{EvalError, Result};

/// The per-query scores of one report, by query id.
pub type PerQuery = BTreeMap<String, f64>;

#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub n_queries: usize,
    pub base_mean: f64,
    pub new_mean: f64,
    /// new - base.
    pub mean_difference: f64,
    /// 95% paired bootstrap interval of the mean difference.
    pub ci95: (f64, f64),
    /// Two-sided p-value of the paired randomisation test.
    pub p_value: f64,
    pub better: usize,
    pub worse: usize,
    pub equal: usize,
}

/// Resamples for the bootstrap and the randomisation test.
pub const RESAMPLES: usize = 10_000;

/// Compares two runs query by query. Both must score exactly the same queries.
pub fn compare(base: &PerQuery, new: &PerQuery) -> std::result::Result<Comparison, String> {
    if base.is_empty() {
        return Err("the reports have no per-query scores".to_string());
    }
    if let Some(id) = base.keys().find(|id| !new.contains_key(*id)) {
        return Err(format!("query {id:?} is in the first report only"));
    }
    if let Some(id) = new.keys().find(|id| !base.contains_key(*id)) {
        return Err(format!("query {id:?} is in the second report only"));
    }
    // BTreeMaps iterate in key order, so the pairs line up.
    let differences: Vec<f64> = base
        .values()
        .zip(new.values())
        .map(|(b, n)| n - b)
        .collect();
    let n = differences.len();
    let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len() as f64;
    let observed = mean(&differences);
    let mut rng = SplitMix64(0x5ca1_ab1e);

    let mut means: Vec<f64> = (0..RESAMPLES)
        .map(|_| (0..n).map(|_| differences[rng.below(n)]).sum::<f64>() / n as f64)
        .collect();
    means.sort_by(f64::total_cmp);
    let at = |q: f64| means[((q * (RESAMPLES - 1) as f64).round() as usize).min(RESAMPLES - 1)];

    // Under the null hypothesis each query's difference is as likely to have either sign.
    let extreme = (0..RESAMPLES)
        .filter(|_| {
            let flipped: f64 = differences
                .iter()
                .map(|d| if rng.next() & 1 == 0 { *d } else { -d })
                .sum::<f64>()
                / n as f64;
            flipped.abs() >= observed.abs() - 1e-12
        })
        .count();

    let tolerance = 1e-9;
    Ok(Comparison {
        n_queries: n,
        base_mean: mean(&base.values().copied().collect::<Vec<_>>()),
        new_mean: mean(&new.values().copied().collect::<Vec<_>>()),
        mean_difference: observed,
        ci95: (at(0.025), at(0.975)),
        // Counting the observed assignment itself keeps the estimate away from an impossible 0.
        p_value: (extreme + 1) as f64 / (RESAMPLES + 1) as f64,
        better: differences.iter().filter(|d| **d > tolerance).count(),
        worse: differences.iter().filter(|d| **d < -tolerance).count(),
        equal: differences.iter().filter(|d| d.abs() <= tolerance).count(),
    })
}

/// One report's scores, and what they were measured on.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportScores {
    pub dataset: String,
    pub split: String,
    pub per_query: PerQuery,
}

/// Reads `dataset`, `split` and `per_query_ndcg@10` from a report `scanaid eval retrieval --json`
/// wrote.
pub fn read_report(path: &Path) -> Result<ReportScores> {
    let text = std::fs::read_to_string(path).map_err(|source| EvalError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let bad = |line: usize, message: String| EvalError::Malformed {
        path: path.to_path_buf(),
        line,
        message,
    };
    let report: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(e.line(), format!("not JSON: {e}")))?;
    let text_field = |name: &str| {
        report
            .get(name)
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .ok_or_else(|| bad(1, format!("no \"{name}\"")))
    };
    let (dataset, split) = (text_field("dataset")?, text_field("split")?);
    let scores = report.get("per_query_ndcg@10").ok_or_else(|| {
        bad(
            1,
            "no \"per_query_ndcg@10\" (written by `scanaid eval retrieval --json` since 2026-12-06)"
                .into(),
        )
    })?;
    let per_query = serde_json::from_value(scores.clone()).map_err(|e| {
        bad(
            1,
            format!("\"per_query_ndcg@10\" is not a map of query id to number: {e}"),
        )
    })?;
    Ok(ReportScores {
        dataset,
        split,
        per_query,
    })
}

/// Sebastiano Vigna's splitmix64: a few lines of well-known, seedable randomness, so that the
/// figures are reproducible without pinning a random-number crate's stream.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (the modulo bias is below 1e-15 for the sizes here).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs(scores: &[(&str, f64)]) -> PerQuery {
        scores.iter().map(|(id, s)| (id.to_string(), *s)).collect()
    }

    #[test]
    fn identical_runs_differ_by_nothing_and_are_not_significant() {
        let a = runs(&[("q1", 0.5), ("q2", 1.0), ("q3", 0.0)]);
        let c = compare(&a, &a).unwrap();
        assert_eq!(c.mean_difference, 0.0);
        assert_eq!(c.ci95, (0.0, 0.0));
        assert_eq!((c.better, c.worse, c.equal), (0, 0, 3));
        assert_eq!(c.p_value, 1.0);
    }

    #[test]
    fn a_consistent_gain_on_many_queries_is_significant() {
        let base: PerQuery = (0..200).map(|i| (format!("q{i}"), 0.5)).collect();
        let new: PerQuery = (0..200)
            .map(|i| (format!("q{i}"), if i % 10 == 0 { 0.45 } else { 0.6 }))
            .collect();
        let c = compare(&base, &new).unwrap();
        // 180 queries +0.1, 20 queries -0.05: mean +0.085.
        assert!((c.mean_difference - 0.085).abs() < 1e-12);
        assert!(c.ci95.0 > 0.07 && c.ci95.1 < 0.1, "{:?}", c.ci95);
        assert!(c.p_value < 0.001, "{}", c.p_value);
        assert_eq!((c.better, c.worse, c.equal), (180, 20, 0));
        assert!((c.new_mean - 0.585).abs() < 1e-12);
    }

    #[test]
    fn a_gain_on_a_few_of_many_queries_is_not_significant() {
        let base: PerQuery = (0..300).map(|i| (format!("q{i}"), 0.5)).collect();
        let mut new = base.clone();
        // Two queries up by 0.5, one down by 0.5: +0.0017 on average.
        for (id, d) in [("q1", 0.5), ("q2", 0.5), ("q3", -0.5)] {
            *new.get_mut(id).unwrap() += d;
        }
        let c = compare(&base, &new).unwrap();
        assert!(c.ci95.0 < 0.0 && c.ci95.1 > 0.0, "{:?}", c.ci95);
        assert!(c.p_value > 0.3, "{}", c.p_value);
    }

    #[test]
    fn runs_over_different_queries_are_refused() {
        let a = runs(&[("q1", 0.5), ("q2", 1.0)]);
        let b = runs(&[("q1", 0.5), ("q3", 1.0)]);
        assert_eq!(
            compare(&a, &b).unwrap_err(),
            "query \"q2\" is in the first report only"
        );
        assert!(compare(&PerQuery::new(), &PerQuery::new()).is_err());
    }
}
