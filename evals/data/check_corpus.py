#!/usr/bin/env python3
"""Checks the bundled manual corpus, the asset registry and the retrieval question set.

Usage: python3 evals/data/check_corpus.py [--root PATH]

PATH is the repository root (default: two folders above this file). The checker:
  * parses every manuals/**/*.md front matter (TOML between two `+++` lines) and validates its keys;
  * computes section anchors the way the indexer does (GitHub-style slugs, `{#id}` overrides,
    duplicates suffixed -1, -2 ... in order of appearance);
  * validates heading attributes (`{audience=a,b}`, `{#anchor}`);
  * verifies every question in evals/data/manual-questions.jsonl and manual-questions-es.jsonl names an
    existing manual and anchor, and that its audience is one the section is written for (the nearest
    `{audience=...}` on the heading or a parent heading, else the front matter `audience`; stricter than the
    server, whose roles also read lower audiences): `eval answerability --as-served` asks each question as its
    audience;
  * verifies manuals/assets.toml: sites, queues, assets, codes, and that every referenced id exists;
  * flags URLs and real-looking host names (only *.example domains are allowed);
  * prints body word counts per manual.
Exits 1 if anything is wrong. Python 3.11+ standard library only.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tomllib
from pathlib import Path

ALLOWED_KEYS = {"id", "title", "models", "audience", "language", "revision"}
REQUIRED_KEYS = {"id", "title", "models", "audience", "language", "revision"}
AUDIENCES = {"operator", "technician", "biomed", "clinician", "patient", "public"}
LANGUAGES = {"en", "es"}
ID_RE = re.compile(r"^[a-z0-9._-]+$")
CODE_ALPHABET = set("ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789")
PLACEMENTS = {"nameplate", "service-panel", "brochure", "door", "cabinet", "front-panel",
              "control-panel", "pole-clamp", "access-panel", "binder", "wall"}
MIN_WORDS = {"equipment-en": 3200, "equipment-es": 1500}
LEAFLET_WORDS = (600, 1200)

FENCE_RE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
ATX_RE = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?[ \t]*$")
ATTR_RE = re.compile(r"\s*\{([^{}]*)\}\s*$")
URL_RE = re.compile(r"https?://|www\.", re.I)
HOST_RE = re.compile(r"\b[a-z0-9][a-z0-9-]*(?:\.[a-z0-9-]+)*\.(?:com|org|net|gov|edu|io|co|us|info|biz|health)\b", re.I)
EXAMPLE_HOST_RE = re.compile(r"\b[a-z0-9][a-z0-9-]*(?:\.[a-z0-9-]+)*\.example\b", re.I)


def slugify(text: str) -> str:
    """Lowercase letters and digits kept (Unicode included); space, '-' and '_' become '-';
    everything else dropped; runs of '-' collapsed; '-' trimmed at both ends."""
    out: list[str] = []
    for ch in text.strip():
        if ch.isalnum():
            out.append(ch.lower())
        elif ch in " -_" and (not out or out[-1] != "-"):
            out.append("-")
    return "".join(out).strip("-")


class Problems:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, where: str, message: str) -> None:
        self.items.append(f"{where}: {message}")


def split_front_matter(text: str) -> tuple[str, str, int] | None:
    text = text.removeprefix("\ufeff")
    lines = text.split("\n")
    if not lines or lines[0].rstrip() != "+++":
        return None
    for i in range(1, len(lines)):
        if lines[i].rstrip() == "+++":
            return "\n".join(lines[1:i]), "\n".join(lines[i + 1:]), i + 2
    return None


def parse_heading_attrs(raw: str) -> tuple[str, str | None, list[str] | None, str | None]:
    """Returns (heading text, explicit id, audiences, error)."""
    explicit = None
    audience = None
    m = ATTR_RE.search(raw)
    if not m:
        return raw, None, None, None
    text = raw[: m.start()]
    for part in m.group(1).split():
        if part.startswith("#"):
            explicit = part[1:]
        elif part.startswith("."):
            continue
        elif "=" in part:
            key, value = part.split("=", 1)
            if key == "audience":
                audience = [v for v in value.split(",") if v]
            else:
                return text, explicit, audience, f"unknown heading attribute {key!r}"
        else:
            return text, explicit, audience, f"malformed heading attribute {part!r}"
    return text, explicit, audience, None


def headings(body: str):
    """Yields (line number in body, level, text, explicit id, audience, error) for ATX headings
    outside fenced code blocks."""
    fence = None
    for n, line in enumerate(body.split("\n"), 1):
        fm = FENCE_RE.match(line)
        if fm:
            marker = fm.group(1)
            if fence is None:
                fence = marker[0] * len(marker)
            elif marker.startswith(fence):
                fence = None
            continue
        if fence is not None:
            continue
        m = ATX_RE.match(line)
        if not m:
            continue
        raw = m.group(2) or ""
        # Optional closing sequence of #'s.
        raw = re.sub(r"(?:^|[ \t]+)#+[ \t]*$", "", raw)
        text, explicit, audience, err = parse_heading_attrs(raw)
        text = " ".join(text.split())
        yield n, len(m.group(1)), text, explicit, audience, err


def compute_anchors(body: str, where: str, problems: Problems) -> list[tuple[str, str, int, list[str] | None]]:
    """(anchor, heading text, level, audiences) per section; audiences come from the nearest
    `{audience=...}` on the heading or a parent heading, None if the front matter applies."""
    used: set[str] = set()
    result = []
    stack: list[tuple[int, list[str] | None]] = []
    for n, level, text, explicit, audience, err in headings(body):
        if err:
            problems.add(f"{where}:{n}", err)
        if re.search(r"[*`\[\]<>\\]", text):
            problems.add(f"{where}:{n}", f"heading contains inline markup, anchors may differ: {text!r}")
        if audience is not None:
            bad = [a for a in audience if a not in AUDIENCES]
            if bad or not audience:
                problems.add(f"{where}:{n}", f"bad audience attribute {audience!r}")
        base = explicit if explicit else slugify(text)
        if not base:
            base = "section"
        candidate, k = base, 0
        while candidate in used:
            k += 1
            candidate = f"{base}-{k}"
        used.add(candidate)
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, audience))
        inherited = next((a for _, a in reversed(stack) if a is not None), None)
        result.append((candidate, text, level, inherited))
    return result


def check_tables(body: str, where: str, first_line: int, problems: Problems) -> None:
    """Every row of a pipe table has as many cells as its header row."""
    header_cells = None
    for n, line in enumerate(body.split("\n"), first_line):
        stripped = line.strip()
        if not stripped.startswith("|"):
            header_cells = None
            continue
        cells = len(stripped.strip("|").split("|"))
        if header_cells is None:
            header_cells = cells
        elif cells != header_cells:
            problems.add(f"{where}:{n}", f"table row has {cells} cells, header has {header_cells}")


def count_words(body: str) -> tuple[int, int]:
    """(all words, words outside tables). A word is a whitespace-separated token with a letter or digit."""
    total = prose = 0
    fence = False
    for line in body.split("\n"):
        if FENCE_RE.match(line):
            fence = not fence
        words = sum(1 for t in line.split() if any(c.isalnum() for c in t))
        total += words
        if not line.lstrip().startswith("|"):
            prose += words
    return total, prose


def check_manuals(root: Path, problems: Problems):
    manuals: dict[str, dict] = {}
    mdir = root / "manuals"
    for path in sorted(mdir.rglob("*.md")):
        if any(part.startswith(".") for part in path.relative_to(mdir).parts):
            continue
        rel = str(path.relative_to(root))
        text = path.read_text(encoding="utf-8")
        split = split_front_matter(text)
        if split is None:
            problems.add(rel, "missing or unclosed +++ front matter")
            continue
        front, body, body_line = split
        try:
            meta = tomllib.loads(front)
        except tomllib.TOMLDecodeError as e:
            problems.add(rel, f"bad TOML front matter: {e}")
            continue
        extra = set(meta) - ALLOWED_KEYS
        missing = REQUIRED_KEYS - set(meta)
        if extra:
            problems.add(rel, f"front matter keys not allowed: {sorted(extra)}")
        if missing:
            problems.add(rel, f"front matter keys missing: {sorted(missing)}")
            continue
        mid = meta["id"]
        if not isinstance(mid, str) or not ID_RE.match(mid):
            problems.add(rel, f"bad id {mid!r}")
            continue
        if mid in manuals:
            problems.add(rel, f"duplicate id {mid!r} (also {manuals[mid]['path']})")
            continue
        if meta["language"] not in LANGUAGES:
            problems.add(rel, f"language {meta['language']!r} not in {sorted(LANGUAGES)}")
        if not isinstance(meta["models"], list) or not all(isinstance(m, str) for m in meta["models"]):
            problems.add(rel, "models must be a list of strings")
        aud = meta["audience"]
        if not isinstance(aud, list) or not aud or any(a not in AUDIENCES for a in aud):
            problems.add(rel, f"bad audience {aud!r}")
        if not str(meta["title"]).strip() or not str(meta["revision"]).strip():
            problems.add(rel, "title and revision must not be empty")
        for n, line in enumerate(body.split("\n"), body_line):
            if URL_RE.search(line):
                problems.add(f"{rel}:{n}", "contains a URL")
            for host in HOST_RE.findall(line):
                problems.add(f"{rel}:{n}", f"real-looking host name {host!r}; use a .example domain")
            if re.search(r"lorem ipsum|placeholder", line, re.I) or re.search(r"\bTODO\b|\bTBD\b|\bXXX\b|_{4,}", line):
                problems.add(f"{rel}:{n}", "placeholder text")
        anchors = compute_anchors(body, rel, problems)
        check_tables(body, rel, body_line, problems)
        total, prose = count_words(body)
        kind = "patient" if "patient" in aud else f"equipment-{meta['language']}"
        if kind == "patient":
            if not LEAFLET_WORDS[0] <= total <= LEAFLET_WORDS[1]:
                problems.add(rel, f"leaflet has {total} words, expected {LEAFLET_WORDS[0]}-{LEAFLET_WORDS[1]}")
        elif total < MIN_WORDS[kind]:
            problems.add(rel, f"manual has {total} words, expected at least {MIN_WORDS[kind]}")
        manuals[mid] = {
            "path": rel,
            "meta": meta,
            "anchors": {a for a, _, _, _ in anchors},
            "readers": {a: aud if aud is not None else meta["audience"] for a, _, _, aud in anchors},
            "words": total,
            "prose": prose,
            "sections": len(anchors),
        }
    return manuals


def check_questions(root: Path, manuals: dict, problems: Problems,
                    name: str = "manual-questions.jsonl", check_readers: bool = False) -> int:
    """With check_readers, the question's audience must also be one that can read its section."""
    path = root / "evals" / "data" / name
    rel = str(path.relative_to(root))
    if not path.exists():
        problems.add(rel, "missing")
        return 0
    seen: set[str] = set()
    count = 0
    for n, line in enumerate(path.read_text(encoding="utf-8").split("\n"), 1):
        if not line.strip():
            continue
        try:
            q = json.loads(line)
        except json.JSONDecodeError as e:
            problems.add(f"{rel}:{n}", f"bad JSON: {e}")
            continue
        count += 1
        keys = {"id", "question", "manual", "anchor", "audience"}
        if set(q) != keys:
            problems.add(f"{rel}:{n}", f"keys must be {sorted(keys)}, got {sorted(q)}")
            continue
        if q["id"] in seen:
            problems.add(f"{rel}:{n}", f"duplicate question id {q['id']!r}")
        seen.add(q["id"])
        if q["audience"] not in AUDIENCES:
            problems.add(f"{rel}:{n}", f"bad audience {q['audience']!r}")
        m = manuals.get(q["manual"])
        if m is None:
            problems.add(f"{rel}:{n}", f"unknown manual {q['manual']!r}")
        elif q["anchor"] not in m["anchors"]:
            problems.add(f"{rel}:{n}", f"manual {q['manual']!r} has no anchor {q['anchor']!r}")
        elif check_readers and q["audience"] not in m["readers"][q["anchor"]]:
            problems.add(f"{rel}:{n}", f"audience {q['audience']!r} cannot read {q['manual']}#{q['anchor']} "
                         f"(readers: {', '.join(m['readers'][q['anchor']])})")
    return count


def check_assets(root: Path, manuals: dict, problems: Problems) -> dict:
    path = root / "manuals" / "assets.toml"
    rel = str(path.relative_to(root))
    if not path.exists():
        problems.add(rel, "missing")
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        problems.add(rel, f"bad TOML: {e}")
        return {}
    unknown = set(data) - {"site", "queue", "asset", "code"}
    if unknown:
        problems.add(rel, f"unknown tables {sorted(unknown)}")
    fields = {
        "site": {"id", "name", "timezone", "address", "contact", "on_call"},
        "queue": {"id", "name", "site", "hours"},
        "asset": {"id", "name", "model", "serial", "site", "location", "manuals", "queue"},
        "code": {"code", "asset", "placement"},
    }
    ids: dict[str, set[str]] = {}
    for table, wanted in fields.items():
        ids[table] = set()
        for i, row in enumerate(data.get(table, []), 1):
            where = f"{rel} [[{table}]] #{i}"
            if set(row) != wanted:
                problems.add(where, f"fields must be {sorted(wanted)}, got {sorted(row)}")
            key = row.get("code" if table == "code" else "id")
            if key in ids[table]:
                problems.add(where, f"duplicate {table} {key!r}")
            ids[table].add(key)
    zones = set()
    for s in data.get("site", []):
        tz = s.get("timezone", "")
        if not re.match(r"^[A-Z][A-Za-z_]+/[A-Za-z_/]+$", tz):
            problems.add(f"{rel} site {s.get('id')}", f"timezone {tz!r} is not an IANA name")
        zones.add(tz)
    if len(ids["site"]) < 3 or len(zones) < 3:
        problems.add(rel, "need at least 3 sites in different time zones")
    for q in data.get("queue", []):
        if q.get("site") not in ids["site"]:
            problems.add(f"{rel} queue {q.get('id')}", f"unknown site {q.get('site')!r}")
    models_in_manuals = {m for man in manuals.values() for m in man["meta"].get("models", [])}
    queue_site = {q["id"]: q.get("site") for q in data.get("queue", [])}
    for a in data.get("asset", []):
        where = f"{rel} asset {a.get('id')}"
        if a.get("site") not in ids["site"]:
            problems.add(where, f"unknown site {a.get('site')!r}")
        if a.get("queue") not in ids["queue"]:
            problems.add(where, f"unknown queue {a.get('queue')!r}")
        elif queue_site.get(a["queue"]) != a.get("site"):
            problems.add(where, f"queue {a['queue']!r} belongs to another site")
        if a.get("model") not in models_in_manuals:
            problems.add(where, f"model {a.get('model')!r} is not covered by any manual")
        if not a.get("manuals"):
            problems.add(where, "no manuals")
        for mid in a.get("manuals", []):
            if mid not in manuals:
                problems.add(where, f"unknown manual {mid!r}")
            elif a.get("model") not in manuals[mid]["meta"]["models"]:
                problems.add(where, f"manual {mid!r} does not list model {a.get('model')!r}")
    if len(ids["asset"]) < 10:
        problems.add(rel, "need at least 10 assets")
    per_asset: dict[str, list[str]] = {}
    for c in data.get("code", []):
        where = f"{rel} code {c.get('code')}"
        code = c.get("code", "")
        if len(code) != 8 or not set(code) <= CODE_ALPHABET:
            problems.add(where, "code must be 8 characters from [A-Za-z0-9] without 0, O, 1, l, I")
        if c.get("asset") not in ids["asset"]:
            problems.add(where, f"unknown asset {c.get('asset')!r}")
        if c.get("placement") not in PLACEMENTS:
            problems.add(where, f"unusual placement {c.get('placement')!r}")
        per_asset.setdefault(c.get("asset"), []).append(c.get("placement"))
    for a in ids["asset"]:
        placements = per_asset.get(a, [])
        if not 2 <= len(placements) <= 3:
            problems.add(f"{rel} asset {a}", f"has {len(placements)} codes, expected 2-3")
        if len(set(placements)) != len(placements):
            problems.add(f"{rel} asset {a}", "codes must have different placements")
    lowered = {c.lower() for c in ids["code"]}
    if len(lowered) != len(ids["code"]):
        problems.add(rel, "codes differ only by letter case")
    return {k: len(v) for k, v in ids.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[2])
    args = parser.parse_args()
    problems = Problems()
    manuals = check_manuals(args.root, problems)
    nq = check_questions(args.root, manuals, problems, check_readers=True)
    nq_es = check_questions(args.root, manuals, problems, "manual-questions-es.jsonl", check_readers=True)
    counts = check_assets(args.root, manuals, problems)

    print(f"{'manual id':28} {'lang':4} {'words':>6} {'prose':>6} {'sections':>8}  path")
    for mid, m in sorted(manuals.items(), key=lambda kv: kv[1]["path"]):
        print(f"{mid:28} {m['meta']['language']:4} {m['words']:>6} {m['prose']:>6} {m['sections']:>8}  {m['path']}")
    print(f"total words: {sum(m['words'] for m in manuals.values())}")
    print(f"questions: {nq}; Spanish questions: {nq_es}; registry: " + ", ".join(f"{v} {k}s" for k, v in counts.items()))
    if problems.items:
        print(f"\n{len(problems.items)} problem(s):")
        for p in problems.items:
            print("  " + p)
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
