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
    "recbole": [
        ("ease", "ease"),
        ("itemknn", "itemknn"),
        ("multivae", None),
        ("simplex", "twotower"),
        ("sasrec", "sasrec"),
    ],
    "rectools": [("sasrec", "sasrec"), ("sasrec-matched", "sasrec")],
}


#: the peer scripts that read --params (the others run fixed parameters).
TAKES_PARAMS = ("implicit", "recbole")


@dataclass(frozen=True)
class Run:
    """One child process to start: the command and where its lists go."""

    row: report.Row
    command: list[str]
    out: Path
    cwd: Path


def parse_variant(spec: str, flag: str) -> tuple[str, str, dict[str, Any]]:
    """MODEL:key=value[,key=value] -> (MODEL, "key=value,...", {key: value}); values are JSON
    where they parse as JSON (numbers, true, lists) and strings otherwise."""
    name, _, settings = spec.partition(":")
    pairs = [p.partition("=") for p in settings.split(",") if p]
    if not name or not pairs or any(not key or not eq for key, eq, _ in pairs):
        raise SystemExit(f"{flag} takes MODEL:key=value[,key=value], got {spec!r}")
    return name, settings, {key: _scalar(value) for key, _, value in pairs}


def _scalar(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text  # a bare string such as item


def peer_variants(specs: list[str]) -> dict[str, list[tuple[str, str, dict[str, Any]]]]:
    """--peer-variant PEER:MODEL:key=value[,...] -> {peer: [(model, row label, params)]}."""
    out: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for spec in specs:
        peer, _, rest = spec.partition(":")
        if peer not in TAKES_PARAMS:
            raise SystemExit(f"--peer-variant {spec!r}: only {TAKES_PARAMS} take parameters")
        try:
            model, settings, params = parse_variant(rest, "--peer-variant")
        except SystemExit:
            raise SystemExit(
                f"--peer-variant takes PEER:MODEL:key=value[,key=value], got {spec!r}"
            ) from None
        if model not in dict(PEER_MODELS[peer]):
            known = [name for name, _ in PEER_MODELS[peer]]
            raise SystemExit(f"--peer-variant {spec!r}: {peer} runs {known}, not {model!r}")
        out.setdefault(peer, []).append((model, f"{model} {settings}", params))
    return out


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
    variants: dict[str, list[tuple[str, str, dict[str, Any]]]] | None = None,
) -> list[Run]:
    """Each peer's models beside ours; for implicit also a "matched" row per tuned config;
    `variants` (peer_variants) adds rows of a peer's model with other parameters."""
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
        beside = dict(PEER_MODELS[peer])
        for peer_model, label, params in (variants or {}).get(peer, []):
            planned.append((peer_model, beside[peer_model], label, params))
        for peer_model, ours, label, params in planned:
            if ours is not None and ours not in models:
                continue
            row = report.Row(
                ours or peer_model, peer, label, beside_tuned=label.endswith("-matched")
            )
            out = work / f"{peer}-{label.replace(' ', '-')}.csv"
            if python is None:
                row.error = why
            script = str(PEERS_DIR / f"run_{peer}.py")
            command = [str(python), script, "--split", str(split_dir), "--model", peer_model]
            command += ["--out", str(out), "--k", str(k)]
            command += ["--params", json.dumps(params)] if params is not None else []
            runs.append(Run(row, command, out, work))
    return runs
