#!/usr/bin/env python3
"""Research only: split scifact's TRAIN claims into a fitting part and a held-out part, so a training
recipe can be chosen without looking at the test split.

    python holdout_split.py ../../../shared/evaldata/scifact /tmp/scifact-holdout --frac 0.2 --seed 7

OUT gets symlinks to DATA's corpus.jsonl and queries.jsonl (nothing is copied) and two qrels files,
`qrels/fit.tsv` and `qrels/heldout.tsv`, so `scanaid eval retrieval --data OUT --split heldout` and
`finetune_minilm.py --data OUT --split fit` work on them. The draw is seeded and made over sorted
claim ids, so the same arguments always give the same split.
"""
import argparse
import os
import random


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data")
    ap.add_argument("out")
    ap.add_argument("--frac", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    lines = open(os.path.join(args.data, "qrels", "train.tsv")).read().splitlines()
    header, rows = lines[0], [line.split("\t") for line in lines[1:] if line.strip()]
    claims = sorted({r[0] for r in rows}, key=lambda q: (len(q), q))
    held = set(random.Random(args.seed).sample(claims, round(len(claims) * args.frac)))
    os.makedirs(os.path.join(args.out, "qrels"), exist_ok=True)
    for name in ["corpus.jsonl", "queries.jsonl"]:
        link = os.path.join(args.out, name)
        if not os.path.lexists(link):
            os.symlink(os.path.abspath(os.path.join(args.data, name)), link)
    for split, keep in [("fit", lambda q: q not in held), ("heldout", lambda q: q in held)]:
        with open(os.path.join(args.out, "qrels", f"{split}.tsv"), "w") as out:
            out.write(header + "\n")
            for r in rows:
                if keep(r[0]):
                    out.write("\t".join(r) + "\n")
    print(f"{len(claims) - len(held)} fitting claims, {len(held)} held out")


if __name__ == "__main__":
    main()
