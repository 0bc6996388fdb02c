#!/usr/bin/env python3
"""Research only: (heading, section body) training pairs from our own markdown manuals, a training
signal about device manuals that is neither a test split nor our question sets.

    python manual_pairs.py ../../manuals --language en --exclude vp300-service,rtu12-iom > pairs.jsonl

Each section with at least MIN_WORDS words of its own text gives one line
`{"manual", "query", "positive", "negatives"}`: the query is the heading path below the manual's top heading
(what the section is about, as a reader would name it), the positive is
the section's own text with its heading left out (otherwise the pair is a string match), and the
negatives are the same manual's other sections (the harder ones for a model that only learned the
manual's vocabulary). This is the "body first selection" pre-training task of Chang et al. (2020),
applied to manuals. `--exclude` leaves whole manuals out, so questions about them measure transfer. `--questions` takes
written questions about the sections (keyed by manual id and heading line) as the queries instead.
"""
import argparse
import json
import os
import re
import sys

MIN_WORDS = 12
ATTRIBUTES = re.compile(r"\s*\{[^}]*\}\s*$")
NUMBERING = re.compile(r"^\d+(\.\d+)*\.?\s+")


def plain(markdown):
    """Markdown to the words a reader sees: no table rules, list markers, emphasis or link targets."""
    lines = []
    for line in markdown.splitlines():
        line = line.strip()
        if re.fullmatch(r"\|?\s*:?-{3,}.*", line):
            continue
        line = re.sub(r"^([-*+]|\d+[.)])\s+", "", line)
        line = line.replace("|", " ")
        line = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", line)
        line = re.sub(r"[*_`>]+", "", line)
        if line:
            lines.append(line)
    return re.sub(r"\s+", " ", " ".join(lines)).strip()


def sections(path):
    text = open(path, encoding="utf-8").read()
    front, body = text.split("+++", 2)[1:]
    meta = dict(re.findall(r'^(\w+)\s*=\s*"([^"]*)"', front, re.M))
    trail, current, out = [], None, []
    for line in body.splitlines():
        m = re.match(r"^(#{1,6})\s+(.*)$", line)
        if m:
            if current:
                out.append(current)
            level = len(m.group(1))
            heading = NUMBERING.sub("", ATTRIBUTES.sub("", m.group(2))).strip()
            trail = trail[:level - 1] + [heading]
            current = {"path": list(trail), "heading": m.group(2).strip(), "lines": []}
        elif current is not None:
            current["lines"].append(line)
    if current:
        out.append(current)
    return meta, out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("manuals")
    ap.add_argument("--language", default="en")
    ap.add_argument("--exclude", default="", help="manual ids to leave out, comma-separated")
    ap.add_argument("--questions", help="JSONL of {manual, heading, question}: written questions as the "
                    "queries instead of the heading paths")
    args = ap.parse_args()
    excluded = set(filter(None, args.exclude.split(",")))
    written = {}
    if args.questions:
        for line in open(args.questions):
            q = json.loads(line)
            written.setdefault((q["manual"], q["heading"]), []).append(q["question"])
    count = 0
    for root, _, files in sorted(os.walk(args.manuals)):
        for name in sorted(files):
            if not name.endswith(".md"):
                continue
            meta, found = sections(os.path.join(root, name))
            if meta.get("language") != args.language or meta.get("id") in excluded:
                continue
            bodies = [(s, plain("\n".join(s["lines"]))) for s in found]
            bodies = [(s, b) for s, b in bodies if len(b.split()) >= MIN_WORDS]
            for i, (section, body) in enumerate(bodies):
                path = section["path"]
                if args.questions:
                    queries = written.get((meta["id"], section["heading"]), [])
                else:
                    # The top heading names the manual; below it, the headings name the topic,
                    # which is what a question asks about.
                    queries = [" > ".join(path[1:] or path)]
                negatives = [b for j, (_, b) in enumerate(bodies) if j != i]
                for query in queries:
                    print(json.dumps({"manual": meta["id"], "query": query, "positive": body,
                                      "negatives": negatives}))
                    count += 1
    print(f"{count} pairs", file=sys.stderr)


if __name__ == "__main__":
    main()
