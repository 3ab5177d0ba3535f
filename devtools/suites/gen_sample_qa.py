"""Regenerates the sample agent's data (fictional facts), split in two:

- ``devtools/dgm_dev/sample_agent/data/towns.json``: the passages, the agent's knowledge base
  (it ships with the agent: the agent needs it to answer);
- ``devtools/suites/sample-qa.yaml``: the questions with their expected answers, the task suite
  of the grader. It is not part of any installed package, so it is never in the agent's image,
  package path or workspace; it is baked into the evaluation (grader) image only.

    python devtools/suites/gen_sample_qa.py        # from the repository root

This script lives beside the suite, outside the agent's package, on purpose: with the seed, it
reproduces the answer key.

Deterministic (fixed seed). Passages share template words across towns and mention other
towns, so naive word-overlap retrieval is mediocre and term weighting, case folding and
stemming pay off.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import yaml

SYL_A = ["Bri", "Kes", "Mor", "Tal", "Ven", "Ash", "Dun", "Fen", "Gal", "Hol", "Lin", "Quar", "Rav", "Sel", "Thor", "Wyn"]
SYL_B = ["dle", "tre", "ven", "la", "ro", "mi", "ga", "the", "ne", "so"]
SYL_C = ["moor", "ford", "wick", "holm", "stead", "by", "mouth", "gate", "dale", "field"]
FIRST = ["Ada", "Bram", "Cora", "Dorian", "Elsa", "Fabian", "Greta", "Hugo", "Ida", "Jonas", "Katla", "Leon",
         "Mira", "Nils", "Oona", "Pavel", "Rhea", "Soren", "Tilde", "Ulric", "Vera", "Willem"]
LAST = ["Ashgrove", "Brenner", "Calloway", "Dunmore", "Everly", "Fairweather", "Galloway", "Hartwell", "Ingram",
        "Jessop", "Kettering", "Lockwood", "Merriweather", "Northcott", "Oakley", "Pemberton"]
PROF = ["miller", "weaver", "shipwright", "mapmaker", "brewer", "stonemason", "glassblower", "merchant"]
REGION = ["the northern marches", "the salt coast", "the amber valley", "the high plateau", "the river lowlands"]
RIVER = ["Alder", "Brisk", "Cinder", "Dove", "Ember", "Frost", "Glimmer", "Heron", "Ivy", "Juniper", "Kestrel",
         "Lark", "Marrow", "Nettle", "Otter", "Pike", "Quill", "Rowan", "Sable", "Teal"]
EXPORT = ["blue wool", "salted herring", "copper kettles", "pear cider", "river clay", "oak barrels", "linen sails",
          "honey wax", "slate tiles", "dried apricots", "rope and twine", "glass beads", "goat cheese", "iron nails"]
FEST = ["Lantern", "Harvest Moon", "Kite", "Bell", "Ribbon", "Mask", "Bonfire", "Lily", "Drum", "Starling"]

HISTORY = [
    "{T} was founded in {Y} by {F}, a {P} from {R}. The old quarter of {T} lies along the {V} river.",
    "Records show that {F}, a {P}, founded {T} in the year {Y}. The {V} river flows through its old quarter.",
    "The town of {T} dates from {Y}, when it was founded by {F}. {F} was a {P} who came from {R}. "
    "The oldest streets of the old quarter follow the {V} river.",
]
ECONOMY = [
    "The economy of {T} depends on {X}. Every autumn {T} hosts the {E} festival. The population of {T} is "
    "about {N} people. Traders from {O} visit {T} often.",
    "The economy of {T} rests on {X}, which most families produce. The {E} festival is held there each "
    "autumn. {T} has a population of roughly {N} people. Merchants from {O} sell goods in the market.",
    "{T} is known across {R} for {X}, the heart of its economy. In autumn the town celebrates the {E} "
    "festival. Around {N} people live in {T}, and its road leads on to {O}.",
]
QUESTIONS = [
    ("In which year was {t} founded?", "Y"),
    ("When was the town of {T} founded?", "Y"),
    ("Who founded {T}?", "F"),
    ("Who was the founder of {t}?", "F"),
    ("Which river flows through the old quarter of {T}?", "V"),
    ("What river runs along the oldest streets of {t}?", "V"),
    ("What does the economy of {T} depend on?", "X"),
    ("Which goods are produced by the families of {t}?", "X"),
    ("What festival does {T} celebrate in autumn?", "E"),
    ("Which festival is held in {t} every autumn?", "E"),
    ("How many people live in {T}?", "N"),
    ("What is the population of {t}?", "N"),
]


def generate(seed: int = 7, towns: int = 40, questions: int = 100) -> dict:
    rng = random.Random(seed)
    names: list[str] = []
    while len(names) < towns:
        n = rng.choice(SYL_A) + rng.choice(SYL_B) + rng.choice(SYL_C)
        if n not in names:
            names.append(n)
    facts = []
    for i, t in enumerate(names):
        facts.append({
            "T": t, "Y": str(rng.randint(1180, 1890)), "F": f"{rng.choice(FIRST)} {rng.choice(LAST)}",
            "P": rng.choice(PROF), "R": rng.choice(REGION), "V": rng.choice(RIVER), "X": rng.choice(EXPORT),
            "E": rng.choice(FEST), "N": f"{rng.randint(8, 95) * 100 + rng.randint(1, 99)}",
            "O": names[(i + rng.randint(1, towns - 1)) % towns],
        })
    passages = []
    for f in facts:
        passages.append({"id": f"{f['T'].lower()}-history", "text": rng.choice(HISTORY).format(**f)})
        passages.append({"id": f"{f['T'].lower()}-economy", "text": rng.choice(ECONOMY).format(**f)})
    qs = []
    pairs = [(f, q) for f in facts for q in QUESTIONS]
    rng.shuffle(pairs)
    for f, (template, key) in pairs[:questions]:
        answer = f[key]
        if key == "F":
            answer = f["F"]
        qs.append({
            "id": f"q{len(qs):03d}",
            "question": template.format(T=f["T"], t=f["T"].lower()),
            "answer": answer,
            "passage": f"{f['T'].lower()}-{'history' if key in 'YFV' else 'economy'}",
        })
    return {"name": "towns", "license": "CC0 (generated, fictional)", "passages": passages, "questions": qs}


SUITE_HEADER = """\
# Task suite of the dgm sample QA agent (generated by devtools/suites/gen_sample_qa.py; fictional facts).
# Read by the grader (`dgm grade --tasks ...`) in the evaluation image, never by the agent: this file is
# outside every installed package, so candidates can neither read nor change it. Format: docs/grader.md.
"""


def write(root: Path) -> None:
    data = generate()
    passages = {"license": data["license"], "name": data["name"], "passages": data["passages"]}
    (root / "devtools/dgm_dev/sample_agent/data/towns.json").write_text(
        json.dumps(passages, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    suite = {
        "name": "sample-qa",
        "description": "Questions about fictional towns; the answer must contain the expected fact.",
        "defaults": {"scoring": {"rule": "contains", "ignoreCase": True}, "timeoutSeconds": 30},
        "subsets": {"quick": "sample:25", "full": "all"},
        "tasks": [{"id": q["id"], "input": q["question"], "expected": q["answer"],
                   "metadata": {"passage": q["passage"]}} for q in data["questions"]],
    }
    (root / "devtools/suites/sample-qa.yaml").write_text(
        SUITE_HEADER + yaml.safe_dump(suite, sort_keys=False, width=120, allow_unicode=False), encoding="utf-8")


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[2], help="repository root")
    write(parser.parse_args().root)
