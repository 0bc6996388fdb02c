#!/usr/bin/env python3
"""Offline z-score fusion of TREC runs (as `scanaid eval retrieval --run FILE` writes them), scored by
nDCG@10 against BEIR qrels. Research only, not product code: it answers "would a third leg help?"
without building one. Fusion is the product's (indexer/src/fusion.rs, `Fusion::ZScore`): each run's
scores standardised over the list it returned for the query, a passage missing from a list counting as
that list's minimum, then a weighted sum. With the product's two runs at 0.5 / 0.5 it reproduces
`--mode hybrid` exactly (scifact test 0.7315).

    python3 fuse_runs.py ../shared/evaldata/scifact/qrels/test.tsv bm25.run:0.5 dense.run:0.5
"""
import collections
import math
import sys


def load_run(path):
    run = collections.defaultdict(list)
    with open(path) as f:
        for line in f:
            qid, _, doc, _rank, score, _tag = line.split()
            run[qid].append((doc, float(score)))
    return run


def load_qrels(path):
    qrels = collections.defaultdict(dict)
    with open(path) as f:
        next(f)  # header
        for line in f:
            qid, doc, score = line.rstrip("\n").split("\t")
            if int(score) > 0:
                qrels[qid][doc] = int(score)
    return qrels


def ndcg_at_10(ranked, relevant):
    dcg = sum(relevant.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:10]))
    ideal = sorted(relevant.values(), reverse=True)[:10]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def standardised(scored):
    """(z-score of each passage, z-score of the list's minimum) for one run's list."""
    if not scored:
        return {}, 0.0
    scores = [s for _, s in scored]
    mean = sum(scores) / len(scores)
    std = max(math.sqrt(sum((s - mean) ** 2 for s in scores) / len(scores)), 1e-6)
    return {d: (s - mean) / std for d, s in scored}, (min(scores) - mean) / std


def fuse(runs, weights, qid):
    legs = [standardised(run.get(qid, [])) for run in runs]
    docs = set().union(*(set(z) for z, _ in legs))
    fused = {d: sum(w * z.get(d, floor) for w, (z, floor) in zip(weights, legs)) for d in docs}
    return sorted(fused, key=lambda d: -fused[d])


def mean_ndcg(runs, weights, qrels):
    return sum(ndcg_at_10(fuse(runs, weights, q), rel) for q, rel in qrels.items()) / len(qrels)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    qrels = load_qrels(sys.argv[1])
    pairs = [arg.rsplit(":", 1) for arg in sys.argv[2:]]
    runs = [load_run(path) for path, _ in pairs]
    weights = [float(w) for _, w in pairs]
    print(f"nDCG@10 {mean_ndcg(runs, weights, qrels):.4f} over {len(qrels)} queries")
