"""Measure zero-shortcut vs random-shortcut sampling of a course ContextUnet with ``difftool eval``'s judge.

The course's first ResidualConvBlock adds a freshly drawn random 1x1 conv of x on every forward; difftool
uses its expectation (zero). This runs :func:`difftool.eval.report.evaluate` (accuracy per class, FID,
diversity, duplicates) on the same weights, same seeds and same sampler settings in both modes, with the
torch backend (the random mode draws its convs from a generator seeded with ``--seed``).

    nice -n 19 python scripts/course_shortcut_eval.py /root/runs/course/context_model_23.pth \\
        --classes hero,creature,food,weapon,item --per-class 16 --out /root/runs/course/shortcut_eval.json

``WEIGHTS`` is a course-format ``.pth`` (or the ``state.pt`` of ``scripts/course_recipe.py``: its ``model``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

CONFIGS = {
    "ddim25-g1": {"sampler": "ddim", "steps": 25, "guidance": 1.0, "eta": 0.0},  # the course's DDIM, no guidance
    "ddim25-g2": {"sampler": "ddim", "steps": 25, "guidance": 2.0, "eta": 0.0},  # difftool's generic default
    "ddpm-g1": {"sampler": "ddpm", "steps": None, "guidance": 1.0, "eta": 0.0},  # every timestep (slow)
}


def load_course(weights: Path, classes: str | None):
    from difftool.classnames import parse_class_names, with_class_names
    from difftool.models.checkpoint import LoadedModel, card_from_state_dict, load
    from difftool.models.validate import build_checked

    if weights.name == "state.pt":
        state = torch.load(weights, map_location="cpu", weights_only=True)["model"]
        card = card_from_state_dict(state, weights)
        loaded = LoadedModel(build_checked(card.model, state, weights).eval(), card, weights)
    else:
        loaded = load(weights)
    if classes:
        loaded = LoadedModel(loaded.module, with_class_names(loaded.card, parse_class_names(classes)), weights)
    return loaded


def run(weights: Path, classes: str | None, configs: list[str], per_class: int, seed: int, threads: int):
    from difftool.eval.report import evaluate
    from difftool.models.denoiser import TorchDenoiser
    from difftool.runtime.pipeline import Pipeline

    torch.set_num_threads(threads)
    loaded = load_course(weights, classes)
    out = {"weights": str(weights), "per_class": per_class, "seed": seed, "modes": {}}
    for mode in ("zero", "random"):
        loaded.module.set_shortcut(mode, seed=seed)
        pipe = Pipeline(TorchDenoiser(loaded.module, loaded.card, device="cpu", cuda_graphs=False))
        start = time.perf_counter()
        report = evaluate(pipe, configs=[CONFIGS[c] for c in configs], per_class=per_class, seed=seed)
        rows = {}
        for name, row in zip(configs, report.rows, strict=True):
            rows[name] = {"label": row.label, "accuracy": row.accuracy, "fid": row.fid,
                          "diversity": row.diversity, "duplicate_rate": row.duplicate_rate,
                          "per_class_accuracy": row.per_class_accuracy}
        out["modes"][mode] = {"rows": rows, "seconds": round(time.perf_counter() - start, 1),
                              "fid_floor": report.fid_floor, "diversity_real": report.diversity_real,
                              "judge": report.judge, "notes": report.notes}
        print(json.dumps({mode: rows}), flush=True)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("weights", type=Path)
    ap.add_argument("--classes", default="hero,creature,food,weapon,item",
                    help="class names in the model's index order (the training data's)")
    ap.add_argument("--configs", default="ddim25-g1,ddim25-g2", help=", ".join(CONFIGS))
    ap.add_argument("--per-class", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    result = run(args.weights, args.classes, args.configs.split(","), args.per_class, args.seed, args.threads)
    from difftool.fileio import atomic_write

    atomic_write(args.out, lambda p: p.write_text(json.dumps(result, indent=2)))


if __name__ == "__main__":
    main()
