#!/usr/bin/env python3
"""Counts answers that carry numbered steps and those whose steps do not start at step 1 (a procedure
cut short), from `scanaid eval answers --json FILE` reports. Research only.

    python3 answer_steps.py before.json after.json
"""
import json, re, sys
for path in sys.argv[1:]:
    d = json.load(open(path))
    with_steps = cut = 0; lens = []
    for a in d['answers']:
        nums = [int(m.group(1)) for s in a['answer'] for m in [re.match(r'(\d{1,3})\. ', s)] if m]
        if not nums: continue
        with_steps += 1; lens.append(len(a['answer']))
        if nums[0] != 1: cut += 1
    print(f"{path}: answers with steps {with_steps}, not starting at step 1: {cut}, mean sentences in them {sum(lens)/max(1,len(lens)):.1f}, overall {d['mean_sentences']:.2f}, expected cited {d['cites_expected_section']:.3f}, first from it {d['first_sentence_from_expected_section']:.3f}")
