//! Retrieval and classification metrics as small pure functions, with trec_eval / BEIR semantics:
//! graded relevance with linear gain for nDCG, relevance means score > 0 for recall and MRR.

use std::collections::HashMap;

/// nDCG@k: DCG = sum of rel_i / log2(i + 1) over ranks i = 1..k, divided by the ideal DCG.
pub fn ndcg_at_k(ranked: &[&str], qrels: &HashMap<String, i32>, k: usize) -> f64 {
    let dcg: f64 = ranked
        .iter()
        .take(k)
        .enumerate()
        .map(|(i, d)| gain(qrels.get(*d).copied().unwrap_or(0)) / ((i + 2) as f64).log2())
        .sum();
    let mut ideal: Vec<i32> = qrels.values().copied().filter(|&r| r > 0).collect();
    ideal.sort_unstable_by(|a, b| b.cmp(a));
    let idcg: f64 = ideal
        .iter()
        .take(k)
        .enumerate()
        .map(|(i, &r)| gain(r) / ((i + 2) as f64).log2())
        .sum();
    if idcg > 0.0 {
        dcg / idcg
    } else {
        0.0
    }
}

fn gain(rel: i32) -> f64 {
    rel.max(0) as f64
}

/// Share of the relevant passages found in the top k.
pub fn recall_at_k(ranked: &[&str], qrels: &HashMap<String, i32>, k: usize) -> f64 {
    let relevant = qrels.values().filter(|&&r| r > 0).count();
    if relevant == 0 {
        return 0.0;
    }
    let found = ranked
        .iter()
        .take(k)
        .filter(|d| qrels.get(**d).is_some_and(|&r| r > 0))
        .count();
    found as f64 / relevant as f64
}

/// 1 / rank of the first relevant passage in the top k, 0 if none.
pub fn mrr_at_k(ranked: &[&str], qrels: &HashMap<String, i32>, k: usize) -> f64 {
    ranked
        .iter()
        .take(k)
        .position(|d| qrels.get(*d).is_some_and(|&r| r > 0))
        .map_or(0.0, |i| 1.0 / (i + 1) as f64)
}

/// The p-th percentile (0..=100) by linear interpolation between closest ranks.
pub fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = p / 100.0 * (v.len() - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = rank.ceil() as usize;
    v[lo] + (v[hi] - v[lo]) * (rank - lo as f64)
}

/// Area under the ROC curve of `scores` for `labels` (true = positive), by the Mann-Whitney rank
/// formula with average ranks for ties.
pub fn auroc(scores: &[f64], labels: &[bool]) -> f64 {
    let n = scores.len();
    let mut idx: Vec<usize> = (0..n).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut ranks = vec![0.0; n];
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &t in &idx[i..=j] {
            ranks[t] = avg;
        }
        i = j + 1;
    }
    let n_pos = labels.iter().filter(|&&l| l).count() as f64;
    let n_neg = n as f64 - n_pos;
    if n_pos == 0.0 || n_neg == 0.0 {
        return 0.5;
    }
    let rank_sum: f64 = ranks
        .iter()
        .zip(labels)
        .filter(|(_, &l)| l)
        .map(|(r, _)| r)
        .sum();
    (rank_sum - n_pos * (n_pos + 1.0) / 2.0) / (n_pos * n_neg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qrels(pairs: &[(&str, i32)]) -> HashMap<String, i32> {
        pairs.iter().map(|(d, r)| (d.to_string(), *r)).collect()
    }

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-9, "{a} != {b}");
    }

    #[test]
    fn ndcg_by_hand_with_graded_relevance() {
        // Relevant: a (2), b (1). Ranked: x, a, b.
        // DCG = 0/log2(2) + 2/log2(3) + 1/log2(4) = 1.261859507 + 0.5
        // IDCG = 2/log2(2) + 1/log2(3) = 2 + 0.630929754
        let q = qrels(&[("a", 2), ("b", 1)]);
        let want = (2.0 / 3f64.log2() + 0.5) / (2.0 + 1.0 / 3f64.log2());
        close(ndcg_at_k(&["x", "a", "b"], &q, 10), want);
        close(ndcg_at_k(&["a", "b"], &q, 10), 1.0);
        // Cut at 1: only x counts.
        close(ndcg_at_k(&["x", "a", "b"], &q, 1), 0.0);
        close(ndcg_at_k(&[], &q, 10), 0.0);
        // Zero-graded judgments are not relevant.
        close(ndcg_at_k(&["z"], &qrels(&[("z", 0), ("a", 1)]), 10), 0.0);
    }

    #[test]
    fn recall_and_mrr_by_hand() {
        let q = qrels(&[("a", 1), ("b", 1), ("c", 0)]);
        close(recall_at_k(&["c", "a", "x"], &q, 10), 0.5);
        close(recall_at_k(&["c", "a", "b"], &q, 2), 0.5);
        close(mrr_at_k(&["c", "x", "b"], &q, 10), 1.0 / 3.0);
        close(mrr_at_k(&["c", "x", "b"], &q, 2), 0.0);
    }

    #[test]
    fn percentiles_and_auroc_by_hand() {
        close(percentile(&[4.0, 1.0, 3.0, 2.0], 50.0), 2.5);
        close(percentile(&[1.0, 2.0, 3.0, 4.0, 5.0], 95.0), 4.8);
        // Perfect, inverted and tied separations.
        close(
            auroc(&[0.9, 0.8, 0.1, 0.2], &[true, true, false, false]),
            1.0,
        );
        close(
            auroc(&[0.1, 0.2, 0.9, 0.8], &[true, true, false, false]),
            0.0,
        );
        close(
            auroc(&[0.5, 0.5, 0.5, 0.5], &[true, false, true, false]),
            0.5,
        );
        // One positive at 0.6 above negatives 0.5 and below 0.7: 1 of 2 pairs.
        close(auroc(&[0.6, 0.5, 0.7], &[true, false, false]), 0.5);
    }
}
