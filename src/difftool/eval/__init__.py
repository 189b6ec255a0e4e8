"""Sample-quality evaluation: a sprite judge (ONNX classifier), metrics and the eval report.

Torch-free: the judge runs with onnxruntime; only :mod:`difftool.eval.classifier` (training the judge)
needs torch and it is never imported from here.

    from difftool.eval import Judge, evaluate, render_table
    report = evaluate(pipeline)              # DEFAULT_CONFIGS, 64 samples per class
    rich.print(render_table(report)); print(report.to_json())
"""

from __future__ import annotations

from difftool.eval.judge import Judge
from difftool.eval.metrics import (
    conditional_accuracy,
    duplicate_rate,
    frechet_distance,
    mean_pairwise_distance,
    nearest_train_rms,
)
from difftool.eval.report import (
    DEFAULT_CONFIGS,
    DEFAULT_PER_CLASS,
    QUICK_CONFIGS,
    QUICK_PER_CLASS,
    EvalProgress,
    EvalReport,
    EvalRow,
    evaluate,
    render_table,
)

__all__ = [
    "DEFAULT_CONFIGS",
    "DEFAULT_PER_CLASS",
    "QUICK_CONFIGS",
    "QUICK_PER_CLASS",
    "EvalProgress",
    "EvalReport",
    "EvalRow",
    "Judge",
    "conditional_accuracy",
    "duplicate_rate",
    "evaluate",
    "frechet_distance",
    "mean_pairwise_distance",
    "nearest_train_rms",
    "render_table",
]
