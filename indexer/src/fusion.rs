//! Fusing the BM25 and dense result lists into one ranking. Two principled methods: reciprocal-rank
//! fusion, and per-query min-max normalised score fusion with a dense weight fitted on training data.
//! The default and its weight are chosen by measurement (README, "Retrieval results").

use std::collections::HashMap;

/// How the two legs are combined.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fusion {
    /// score = sum over legs of 1 / (k + rank), ranks from 1.
    Rrf { k: f32 },
    /// Each leg's scores min-max normalised over the list that leg returned for this query, then
    /// `(1 - dense_weight) * bm25 + dense_weight * dense`; a candidate missing from a list counts as
    /// that list's minimum (0). Dense scores of BM25-only candidates are filled in exactly so hits
    /// carry both legs' evidence (for confidence), clamped into the dense list's range for fusion.
    MinMax { dense_weight: f32 },
    /// Each leg's scores standardised (z-scores) over the list it returned, then
    /// `(1 - dense_weight) * bm25 + dense_weight * dense`; a missing candidate counts as that list's
    /// minimum.
    ZScore { dense_weight: f32 },
    /// Bruch et al.'s TM2C2 ("An Analysis of Fusion Functions for Hybrid Retrieval", 2023): each
    /// leg scaled from its theoretical minimum (0 for BM25, -1 for a cosine) to the best score
    /// it returned for this query, then `(1 - dense_weight) * bm25 + dense_weight * dense`. A
    /// candidate missing from the BM25 list scores 0 there (it matched no term, or too few);
    /// one missing from the dense list gets its exact dense score.
    TheoreticalMinMax { dense_weight: f32 },
}

impl Default for Fusion {
    /// z-score fusion with dense weight 0.5: the best of min-max, z-score and RRF on scifact's
    /// train split, refitted there (0.3: 0.737, 0.4: 0.745, 0.5: 0.747, 0.6: 0.746) once chunks were
    /// embedded as 100-token windows (README, "How the settings were chosen").
    fn default() -> Self {
        Fusion::ZScore { dense_weight: 0.5 }
    }
}

/// One leg's view of a hit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LegScore {
    /// 1-based rank in that leg's list (0 when the score was filled in for a candidate the leg
    /// did not return itself).
    pub rank: u32,
    pub score: f32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Fused {
    pub ord: u32,
    pub score: f32,
    pub bm25: Option<LegScore>,
    pub dense: Option<LegScore>,
}

/// Fuses two best-first lists of (ord, score). `dense_score` can give the exact dense score of any
/// ord (for candidates only BM25 found); without it such candidates have no dense score.
/// `out_of_reach` names candidates the BM25 leg could not have found (written in another language
/// than the question): missing from its list is no evidence against them, so such a candidate scores
/// the better of its fused score and its dense score alone. BM25 can still lift it (an error code
/// matches in any language) but never sink it.
/// The output is sorted by fused score (ties by ord) and holds each ord once.
pub fn fuse(
    bm25: &[(u32, f32)],
    dense: &[(u32, f32)],
    fusion: Fusion,
    dense_score: Option<&dyn Fn(u32) -> f32>,
    out_of_reach: Option<&dyn Fn(u32) -> bool>,
) -> Vec<Fused> {
    let mut by_ord: HashMap<u32, Fused> = HashMap::with_capacity(bm25.len() + dense.len());
    for (i, &(ord, score)) in bm25.iter().enumerate() {
        by_ord.entry(ord).or_insert(Fused {
            ord,
            score: 0.0,
            bm25: Some(LegScore {
                rank: i as u32 + 1,
                score,
            }),
            dense: None,
        });
    }
    for (i, &(ord, score)) in dense.iter().enumerate() {
        let leg = Some(LegScore {
            rank: i as u32 + 1,
            score,
        });
        by_ord
            .entry(ord)
            .and_modify(|f| {
                if f.dense.is_none() {
                    f.dense = leg
                }
            })
            .or_insert(Fused {
                ord,
                score: 0.0,
                bm25: None,
                dense: leg,
            });
    }
    if let Some(dense_score) = dense_score {
        for f in by_ord.values_mut().filter(|f| f.dense.is_none()) {
            f.dense = Some(LegScore {
                rank: 0,
                score: dense_score(f.ord),
            });
        }
    }
    let mut fused: Vec<Fused> = by_ord.into_values().collect();
    let blind = |ord: u32| out_of_reach.is_some_and(|f| f(ord));
    match fusion {
        Fusion::Rrf { k } => {
            for f in &mut fused {
                let rrf = |leg: Option<LegScore>| match leg {
                    Some(l) if l.rank > 0 => 1.0 / (k + l.rank as f32),
                    _ => 0.0,
                };
                f.score = rrf(f.bm25) + rrf(f.dense);
                if blind(f.ord) {
                    // Dense alone, on the scale of two legs.
                    f.score = f.score.max(2.0 * rrf(f.dense));
                }
            }
        }
        Fusion::MinMax { dense_weight } => {
            // Each leg is normalised over the list it returned itself (filled-in dense scores of
            // BM25-only candidates are clamped into that range, so they count as at most its minimum).
            let (b_min, b_max) = range(bm25.iter().map(|x| x.1));
            let (d_min, d_max) = range(dense.iter().map(|x| x.1));
            for f in &mut fused {
                let b = f.bm25.map_or(0.0, |l| normalise(l.score, b_min, b_max));
                let d = f.dense.map_or(0.0, |l| normalise(l.score, d_min, d_max));
                f.score = (1.0 - dense_weight) * b + dense_weight * d;
                if blind(f.ord) {
                    f.score = f.score.max(d);
                }
            }
        }
        Fusion::ZScore { dense_weight } => {
            let b_stats = stats(bm25.iter().map(|x| x.1));
            let d_stats = stats(dense.iter().map(|x| x.1));
            for f in &mut fused {
                let b = standardise(f.bm25.map(|l| l.score), b_stats);
                let d = standardise(f.dense.filter(|l| l.rank > 0).map(|l| l.score), d_stats);
                f.score = (1.0 - dense_weight) * b + dense_weight * d;
                if blind(f.ord) {
                    f.score = f.score.max(d);
                }
            }
        }
        Fusion::TheoreticalMinMax { dense_weight } => {
            let b_max = bm25.iter().map(|x| x.1).fold(0.0f32, f32::max);
            let d_max = dense.iter().map(|x| x.1).fold(-1.0f32, f32::max);
            for f in &mut fused {
                let b = f.bm25.map_or(0.0, |l| normalise(l.score, 0.0, b_max));
                // With no dense list (no embedder's answer) there is nothing to scale against.
                let d = match f.dense {
                    Some(l) if !dense.is_empty() => normalise(l.score, -1.0, d_max),
                    _ => 0.0,
                };
                f.score = (1.0 - dense_weight) * b + dense_weight * d;
                if blind(f.ord) {
                    f.score = f.score.max(d);
                }
            }
        }
    }
    fused.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.ord.cmp(&b.ord)));
    fused
}

/// (mean, standard deviation, minimum) of a list's scores; a standard deviation of 0 when the list
/// has no spread (one hit, or all equal).
fn stats(scores: impl Iterator<Item = f32>) -> (f32, f32, f32) {
    let v: Vec<f32> = scores.collect();
    if v.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    let n = v.len() as f32;
    let mean = v.iter().sum::<f32>() / n;
    let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f32>() / n;
    let min = v.iter().copied().fold(f32::INFINITY, f32::min);
    (mean, var.sqrt(), min)
}

/// A leg's score in standard units, a candidate the leg did not return counting as its minimum.
/// A list with no spread (one hit, or all equal) has no units: its hits then count +1 and the rest
/// -1, as the best and the floor of a two-hit list do, so a word only one passage holds still
/// lifts that passage. Standardised as usual, the lone hit and every missing candidate would all
/// be 0 and the leg would add nothing.
fn standardise(score: Option<f32>, (mean, std, min): (f32, f32, f32)) -> f32 {
    if std < 1e-6 {
        return if score.is_some() { 1.0 } else { -1.0 };
    }
    (score.unwrap_or(min) - mean) / std
}

fn range(scores: impl Iterator<Item = f32>) -> (f32, f32) {
    scores.fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), s| {
        (lo.min(s), hi.max(s))
    })
}

fn normalise(score: f32, min: f32, max: f32) -> f32 {
    if max - min > f32::EPSILON {
        ((score - min) / (max - min)).clamp(0.0, 1.0)
    } else if score >= max {
        1.0
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn theoretical_min_max_by_hand() {
        let dense_of = |ord: u32| if ord == 1 { 0.0 } else { f32::NAN };
        let out = fuse(
            &[(1, 10.0), (2, 5.0)],
            &[(2, 0.6), (3, 0.2)],
            Fusion::TheoreticalMinMax { dense_weight: 0.5 },
            Some(&dense_of),
            None,
        );
        let got: Vec<(u32, f32)> = out.iter().map(|f| (f.ord, f.score)).collect();
        // BM25 from 0 to 10, dense from -1 to 0.6 (a span of 1.6); 3 is missing from BM25: 0 there.
        // 1: 0.5 * 1 + 0.5 * (1.0 / 1.6); 2: 0.5 * 0.5 + 0.5 * 1; 3: 0.5 * 0 + 0.5 * (1.2 / 1.6)
        let want = [(1, 0.8125), (2, 0.75), (3, 0.375)];
        assert_eq!(got.len(), want.len(), "{got:?}");
        for ((ord, score), (want_ord, want_score)) in got.iter().zip(want) {
            assert_eq!(*ord, want_ord);
            assert!((score - want_score).abs() < 1e-6, "{ord}: {score}");
        }
    }

    #[test]
    fn rrf_by_hand() {
        let out = fuse(
            &[(1, 9.0), (2, 5.0)],
            &[(2, 0.9), (3, 0.8)],
            Fusion::Rrf { k: 60.0 },
            None,
            None,
        );
        let got: Vec<(u32, f32)> = out.iter().map(|f| (f.ord, f.score)).collect();
        // 2: 1/62 + 1/61; 1: 1/61; 3: 1/62
        assert_eq!(got[0].0, 2);
        assert!((got[0].1 - (1.0 / 62.0 + 1.0 / 61.0)).abs() < 1e-7);
        assert_eq!(got[1].0, 1);
        assert_eq!(got[2].0, 3);
    }

    #[test]
    fn min_max_by_hand_with_filled_in_dense_scores() {
        let dense_of = |ord: u32| if ord == 1 { 0.5 } else { 0.0 };
        let out = fuse(
            &[(1, 10.0), (2, 4.0)],
            &[(2, 0.9), (3, 0.7)],
            Fusion::MinMax { dense_weight: 0.5 },
            Some(&dense_of),
            None,
        );
        // bm25 normalised over its list: 1 -> 1, 2 -> 0, 3 -> absent 0.
        // dense over its own list {0.9, 0.7}: 2 -> 1, 3 -> 0, and 1's filled-in 0.5 clamps to 0.
        let got: Vec<(u32, f32)> = out.iter().map(|f| (f.ord, f.score)).collect();
        assert_eq!(got, vec![(1, 0.5), (2, 0.5), (3, 0.0)]);
        assert_eq!(
            out[0].dense,
            Some(LegScore {
                rank: 0,
                score: 0.5
            })
        );
        assert_eq!(
            out[1].bm25,
            Some(LegScore {
                rank: 2,
                score: 4.0
            })
        );
    }

    #[test]
    fn a_candidate_out_of_bm25s_reach_is_not_sunk_by_its_absence() {
        // 1 and 2 are same-language passages BM25 found; 3 is in another language, best on dense.
        let bm25 = [(1, 12.0), (2, 3.0)];
        let dense = [(3, 0.90), (1, 0.60), (2, 0.55), (4, 0.50)];
        let fusion = Fusion::ZScore { dense_weight: 0.5 };
        let plain = fuse(&bm25, &dense, fusion, None, None);
        assert_eq!(plain[0].ord, 1, "without language: BM25's favourite wins");
        let other_language = |ord: u32| ord == 3;
        let aware = fuse(&bm25, &dense, fusion, None, Some(&other_language));
        assert_eq!(aware[0].ord, 3, "{aware:?}");
        // Same-language candidates keep exactly their scores.
        for f in aware.iter().filter(|f| f.ord != 3) {
            let before = plain.iter().find(|p| p.ord == f.ord).unwrap();
            assert_eq!(f.score, before.score);
        }
        // BM25 can still lift an out-of-reach candidate: 1 in another language keeps its fused score.
        let first = |ord: u32| ord == 1;
        let lifted = fuse(&bm25, &dense, fusion, None, Some(&first));
        let one = |out: &[Fused]| out.iter().find(|f| f.ord == 1).unwrap().score;
        assert_eq!(one(&lifted), one(&plain));
    }

    #[test]
    fn a_lone_bm25_hit_still_lifts_its_passage() {
        // Only passage 4 holds the question's rare word; the dense leg puts it fourth.
        let dense = [(1, 0.60), (2, 0.59), (3, 0.58), (4, 0.57), (5, 0.30)];
        let fusion = Fusion::ZScore { dense_weight: 0.5 };
        let score_of = |out: &[Fused], ord: u32| out.iter().find(|f| f.ord == ord).unwrap().score;
        let lone = fuse(&[(4, 7.5)], &dense, fusion, None, None);
        assert_eq!(lone[0].ord, 4, "{lone:?}");
        // Exactly as the best of two hits whose second is at the floor (a standard unit each side).
        let two = fuse(&[(4, 7.5), (5, 2.0)], &dense, fusion, None, None);
        for ord in 1..=4 {
            assert!(
                (score_of(&lone, ord) - score_of(&two, ord)).abs() < 1e-6,
                "{ord}"
            );
        }
        // All BM25 hits equal: each counts above the candidates BM25 did not return.
        let out = fuse(&[(3, 2.0), (4, 2.0)], &dense, fusion, None, None);
        let top2: Vec<u32> = out[..2].iter().map(|f| f.ord).collect();
        assert!(top2.contains(&3) && top2.contains(&4), "{out:?}");
    }

    proptest! {
        #[test]
        fn fused_lists_are_sorted_without_duplicates(
            bm25 in proptest::collection::vec((0u32..50, 0f32..20.0), 0..30),
            dense in proptest::collection::vec((0u32..50, -1f32..1.0), 0..30),
            method in 0usize..4,
        ) {
            let mut bm25 = bm25; bm25.sort_by(|a, b| b.1.total_cmp(&a.1)); let mut seen = std::collections::HashSet::new(); bm25.retain(|x| seen.insert(x.0));
            let mut dense = dense; dense.sort_by(|a, b| b.1.total_cmp(&a.1)); let mut seen = std::collections::HashSet::new(); dense.retain(|x| seen.insert(x.0));
            let fusion = [
                Fusion::Rrf { k: 60.0 },
                Fusion::MinMax { dense_weight: 0.3 },
                Fusion::ZScore { dense_weight: 0.5 },
                Fusion::TheoreticalMinMax { dense_weight: 0.8 },
            ][method];
            let out = fuse(&bm25, &dense, fusion, None, None);
            prop_assert!(out.windows(2).all(|w| w[0].score >= w[1].score));
            let mut ords: Vec<u32> = out.iter().map(|f| f.ord).collect();
            ords.sort();
            let n = ords.len();
            ords.dedup();
            prop_assert_eq!(ords.len(), n);
            let mut union: Vec<u32> = bm25.iter().chain(dense.iter()).map(|x| x.0).collect();
            union.sort(); union.dedup();
            prop_assert_eq!(union, ords);
        }
    }
}
