"""Which peer runs beside which recsemble member, and the command lines that start them.

Runs in recsemble's .venv (bench_generators.py imports it); each peer itself runs from its own
virtualenv under out/peers/ (setup.sh), except implicit, a recsemble dependency.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import report

PEERS_DIR = Path(__file__).resolve().parent
ROOT = PEERS_DIR.parents[1]

#: peer -> [(its model name, the recsemble model it stands beside, or None for a reference)].
PEER_MODELS: dict[str, list[tuple[str, str | None]]] = {
    "implicit": [("als", "ials"), ("bpr", "bpr"), ("cosine", "itemknn")],
    "lenskit": [
        ("pop", "pop"),
        ("itemknn", "itemknn"),
        ("userknn", "userknn"),
        ("als", "ials"),
        ("bpr", "bpr"),
        ("ease", "ease"),
    ],
    "recbole": [("ease", "ease"), ("itemknn", "itemknn"), ("multivae", None), ("sasrec", "sasrec")],
    "rectools": [("sasrec", "sasrec"), ("sasrec-matched", "sasrec")],
}


@dataclass(frozen=True)
class Run:
    """One child process to start: the command and where its lists go."""

    row: report.Row
    command: list[str]
    out: Path
    cwd: Path


def peer_python(peer: str, setup: bool) -> tuple[Path | None, str]:
    if peer == "implicit":
        return Path(sys.executable), ""
    venv = ROOT / "out" / "peers" / f"{peer}-venv"
    if not (venv / ".complete").exists() and setup:
        print(f"setting up {peer} (benchmarks/peers/setup.sh {peer}) ...", flush=True)
        subprocess.run(["bash", str(PEERS_DIR / "setup.sh"), peer], check=False)
    if not (venv / ".complete").exists():
        return None, f"no venv (bash benchmarks/peers/setup.sh {peer} failed or was not run)"
    return venv / "bin" / "python", ""


def implicit_matched(model: str, config: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """implicit's model and parameters doing the work that recsemble's `model` does with
    `config` (a tuned one), so that the tuned row's time is compared like for like; None where
    implicit has no such model."""
    if model == "ials":
        # recsemble's confidence is 1 + alpha * w, implicit's alpha * w; the peers see w = 1.
        keys = ("factors", "regularization", "iterations")
        return "als", {k: config[k] for k in keys} | {"alpha": 1.0 + config["alpha"]}
    if model == "bpr":
        # recsemble's BPR runs on one thread (Hogwild SGD over more is not reproducible).
        keys = ("factors", "learning_rate", "regularization", "iterations")
        return "bpr", {k: config[k] for k in keys} | {"num_threads": 1}
    if model == "itemknn":
        weighting = config["weighting"]
        name = {"none": "cosine", "tfidf": "tfidf", "bm25": "bm25"}[weighting]
        bm25 = {"K1": config["bm25_k1"], "B": config["bm25_b"]} if weighting == "bm25" else {}
        return name, {"K": config["neighbors"]} | bm25
    return None


def peer_runs(
    peers: list[str],
    models: list[str],
    split_dir: Path,
    work: Path,
    setup: bool,
    tuned: dict[str, dict[str, Any]],
    k: int,
) -> list[Run]:
    """Each peer's models beside ours; for implicit also a "matched" row per tuned config."""
    runs = []
    for peer in peers:
        python, why = peer_python(peer, setup)
        planned: list[tuple[str, str | None, str, dict[str, Any] | None]] = [
            (peer_model, ours, peer_model, None) for peer_model, ours in PEER_MODELS[peer]
        ]
        if peer == "implicit":
            for ours in (m for m in models if m in tuned):
                matched = implicit_matched(ours, tuned[ours])
                if matched is not None:
                    planned.append((matched[0], ours, f"{matched[0]}-matched", matched[1]))
        for peer_model, ours, label, params in planned:
            if ours is not None and ours not in models:
                continue
            row = report.Row(ours or peer_model, peer, label)
            out = work / f"{peer}-{label}.csv"
            if python is None:
                row.error = why
            script = str(PEERS_DIR / f"run_{peer}.py")
            command = [str(python), script, "--split", str(split_dir), "--model", peer_model]
            command += ["--out", str(out), "--k", str(k)]
            command += ["--params", json.dumps(params)] if params is not None else []
            runs.append(Run(row, command, out, work))
    return runs
