"""Are a digit model's class-conditioned samples the digits they were asked for? A scikit-learn judge says.

The judge is an RBF support-vector classifier on raw pixels, trained on the first ``--judge-train`` MNIST
digits of ``../shared/data/mnist`` (t10k) and scored on the remaining ones, which it never saw (the script
prints that held-out accuracy: a judge is only as good as it is there). Then ``--per-class`` samples of each
digit come from the model through the runtime (the card's recommended sampler, or the flags), and the
judge classifies them: the share classified as the asked digit is the figure (the issue's target: >= 90 %).

    python scripts/mnist_check.py /tmp/mnist-cpu/model.safetensors --per-class 50
    python scripts/mnist_check.py model.onnx --sampler ddim --steps 25 --guidance 3 --json out.json

Writes nothing into the repo; ``--grid FILE`` saves a 10-row PNG of the samples.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "mnist"


def judge(data: Path, n_train: int):
    """(fitted classifier, held-out accuracy, held-out count) on MNIST pixels scaled to [0, 1]."""
    from sklearn.svm import SVC

    from difftool.train.datasets.mnist import load_mnist

    ds = load_mnist(data)
    x = ((ds.images.reshape(len(ds.images), -1) + 1.0) / 2.0).astype(np.float32)
    y = ds.labels
    clf = SVC(C=10.0, gamma="scale").fit(x[:n_train], y[:n_train])
    held = clf.score(x[n_train:], y[n_train:])
    return clf, float(held), len(x) - n_train


def samples(model: Path, per_class: int, args) -> tuple[np.ndarray, np.ndarray, dict]:
    """(10 * per_class, 28 * 28) samples in [0, 1], their asked digits, and the settings used."""
    from difftool.generate import request_for
    from difftool.runtime.loader import load

    pipe = load(model, backend=args.backend, threads=args.threads)
    k = pipe.card.num_classes
    if k != 10:
        sys.exit(f"error: {model} has {k} classes; this check needs a 10-class digit model")
    asked = np.repeat(np.arange(10), per_class)
    context = np.eye(10, dtype=np.float32)[asked]
    request = request_for(pipe, context, conditioned=True, sampler=args.sampler, steps=args.steps, eta=None,
                          guidance=args.guidance, seed=args.seed)
    start = time.perf_counter()
    out = []
    for lo in range(0, len(asked), args.batch):
        rows = context[lo:lo + args.batch]
        out.append(pipe.sample(replace(request, n=len(rows), context=rows, seed=args.seed + lo)))
    x = np.concatenate(out)  # (N, 1, 28, 28) in [-1, 1]
    lo_, hi_ = pipe.card.value_range
    pixels = np.clip((x - lo_) / (hi_ - lo_), 0.0, 1.0).reshape(len(x), -1)
    used = {"sampler": request.sampler, "steps": request.steps, "eta": request.eta, "variance": request.variance,
            "guidance": request.guidance,
            "seed": args.seed, "backend": pipe.denoiser.name, "sampling_s": round(time.perf_counter() - start, 1)}
    return pixels, asked, used


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", type=Path, help="a 10-class 28x28 digit model (.safetensors or .onnx)")
    ap.add_argument("--data", type=Path, default=DATA, help="the MNIST folder (t10k IDX files)")
    ap.add_argument("--judge-train", type=int, default=8000, help="digits the judge trains on; the rest score it")
    ap.add_argument("--per-class", type=int, default=50)
    ap.add_argument("--sampler", default=None)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--guidance", type=float, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--grid", type=Path, default=None, help="save the samples as a PNG, one row per digit")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if not args.data.is_dir():
        sys.exit(f"error: no MNIST data at {args.data} (the shared data folder); pass --data")
    clf, held, n_held = judge(args.data, args.judge_train)
    print(f"judge: SVC on {args.judge_train} MNIST digits, {100 * held:.1f} % on {n_held} held-out ones",
          file=sys.stderr)
    pixels, asked, used = samples(args.model, args.per_class, args)
    predicted = clf.predict(pixels)
    per_digit = {str(d): float(np.mean(predicted[asked == d] == d)) for d in range(10)}
    result = {"model": str(args.model), "judge_heldout_accuracy": held, "judge_heldout_n": n_held,
              "samples": len(asked), "accuracy": float(np.mean(predicted == asked)), "per_digit": per_digit,
              "settings": used}
    if args.grid is not None:
        from PIL import Image

        tiles = pixels.reshape(10, args.per_class, 28, 28).transpose(0, 2, 1, 3).reshape(280, -1)
        Image.fromarray((tiles * 255).round().astype(np.uint8)).save(args.grid)
    text = json.dumps(result, indent=1)
    if args.json is not None:
        args.json.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
