"""Hostile flag values for every command: ``(id, args, exit code, needle)``.

``args`` may hold ``{st}`` (a good difftool checkpoint), ``{course}`` (a good course ``.pth``), ``{onnx}``
(a good artifact), ``{out}`` (an output path that must not appear) and ``{tmp}`` (a scratch folder).
Exit 2: a value the flag never accepts (usage error). Exit 1: a value this particular model cannot use.
"""

from __future__ import annotations

S = ("sample", "{st}", "-o", "{out}", "--steps", "2", "--n", "2")
G = ("generate", "{onnx}", "-o", "{out}", "--steps", "2", "--n", "2")
E = ("export", "{st}", "-o", "{out}")
T = ("train", "--dataset", "digits", "--model", "tiny", "--out", "{out}", "--max-steps", "1")
B = ("bench", "{onnx}", "--steps", "1", "--repeats", "1", "--batch", "1")

FLAGS: list[tuple[str, tuple[str, ...], int, str]] = [
    # guidance
    ("guidance-nan", (*S, "--guidance", "nan"), 2, "not a finite number"),
    ("guidance-inf", (*S, "--guidance", "inf"), 2, "--guidance"),
    ("guidance-minus-inf", (*S, "--guidance", "-inf"), 2, "--guidance"),
    ("guidance-negative", (*S, "--guidance", "-1"), 2, "--guidance"),
    ("guidance-huge", (*S, "--guidance", "1e9"), 2, "--guidance"),
    ("guidance-text", (*S, "--guidance", "strong"), 2, "--guidance"),
    ("guidance-generate-nan", (*G, "--guidance", "NaN"), 2, "--guidance"),
    # eta
    ("eta-nan", (*S, "--eta", "nan"), 2, "--eta"),
    ("eta-inf", (*S, "--eta", "inf"), 2, "--eta"),
    ("eta-negative", (*S, "--eta", "-0.5"), 2, "--eta"),
    ("eta-generate-nan", (*G, "--eta", "nan"), 2, "--eta"),
    # steps
    ("steps-zero", (*S, "--steps", "0"), 2, "--steps"),
    ("steps-negative", (*S, "--steps", "-3"), 2, "--steps"),
    ("steps-huge", (*S, "--steps", "10000000000000"), 2, "--steps"),
    ("steps-text", (*S, "--steps", "many"), 2, "--steps"),
    ("steps-float", (*S, "--steps", "2.5"), 2, "--steps"),
    ("steps-beyond-schedule", (*S, "--steps", "101"), 1, "steps must be between 1 and 100"),
    ("steps-generate-zero", (*G, "--steps", "0"), 2, "--steps"),
    # n
    ("n-zero", (*S, "--n", "0"), 2, "--n"),
    ("n-negative", (*S, "--n", "-4"), 2, "--n"),
    ("n-huge", (*S, "--n", "100000"), 2, "--n"),
    ("n-generate-zero", (*G, "--n", "0"), 2, "--n"),
    # seed
    ("seed-negative", (*S, "--seed", "-1"), 2, "--seed"),
    ("seed-text", (*S, "--seed", "lucky"), 2, "--seed"),
    ("seed-generate-negative", (*G, "--seed", "-1"), 2, "--seed"),
    # class / mix
    ("class-unknown", (*S, "--class", "dragon"), 1, "unknown class 'dragon'"),
    ("class-index-out-of-range", (*S, "--class", "7"), 1, "unknown class '7'"),
    ("class-negative-index", (*S, "--class", "-1"), 1, "unknown class '-1'"),
    ("class-and-mix", (*S, "--class", "hero", "--mix", "food=1"), 1, "either --class or --mix"),
    ("class-course-generic", ("sample", "{course}", "-o", "{out}", "--steps", "2", "--n", "2", "--class",
                              "dragon"), 1, "unknown class"),
    ("mix-bad-weight", (*S, "--mix", "hero=abc"), 1, "bad weight"),
    ("mix-nan", (*S, "--mix", "hero=nan"), 1, "finite"),
    ("mix-inf", (*S, "--mix", "hero=inf,food=1"), 1, "finite"),
    ("mix-overflow", (*S, "--mix", "hero=1e400"), 1, "finite"),
    ("mix-huge", (*S, "--mix", "hero=1e6"), 1, "finite"),
    ("mix-empty-name", (*S, "--mix", "=0.5"), 1, "empty class name"),
    ("mix-commas", (*S, "--mix", ",,,"), 1, "empty class name"),
    ("mix-unknown", (*S, "--mix", "dragon=0.5,hero=0.5"), 1, "unknown class"),
    ("mix-generate-nan", (*G, "--mix", "hero=nan"), 1, "finite"),
    # other sampling flags
    ("sampler-unknown", (*S, "--sampler", "euler"), 2, "--sampler"),
    ("spacing-unknown", (*S, "--spacing", "random"), 2, "--spacing"),
    ("gif-frames-unknown", (*S, "--gif", "{tmp}/a.gif", "--gif-frames", "z"), 2, "--gif-frames"),
    ("scale-zero", (*S, "--scale", "0"), 2, "--scale"),
    ("scale-huge", (*S, "--scale", "1000"), 2, "--scale"),
    ("nrow-negative", (*S, "--nrow", "-1"), 2, "--nrow"),
    ("threads-zero", (*S, "--threads", "0"), 2, "--threads"),
    ("device-unknown", (*S, "--device", "tpu"), 2, "--device"),
    ("backend-unknown", (*G, "--backend", "quantum"), 2, "--backend"),
    ("backend-torch-for-onnx", (*G, "--backend", "torch-cpu"), 1, "needs a checkpoint"),
    ("unknown-flag", (*S, "--bogus"), 2, "no such option"),
    ("out-missing-folder", ("sample", "{st}", "-o", "{tmp}/no/such/dir/x.png", "--steps", "2", "--n", "2"),
     1, "does not exist"),
    ("out-is-folder", ("sample", "{st}", "-o", "{tmp}", "--steps", "2", "--n", "2"), 1, "is a folder"),
    ("guidance-unconditional", ("generate", "{uncond}", "-o", "{out}", "--steps", "2", "--guidance", "3"), 1,
     "unconditional"),
    # export
    ("export-precision", (*E, "--precision", "int4"), 2, "--precision"),
    ("export-format", (*E, "--format", "zip"), 2, "--format"),
    ("export-image-size-zero", (*E, "--image-size", "0"), 2, "--image-size"),
    ("export-image-size-bad", (*E, "--image-size", "7"), 1, "image size 7"),
    ("export-classes-count", (*E, "--classes", "a,b"), 1, "gave 2 names but this model has 5"),
    ("export-classes-dupe", (*E, "--classes", "a,a,b,c,d"), 1, "unique"),
    ("export-classes-number", (*E, "--classes", "a,b,c,d,3"), 1, "is a number"),
    ("export-classes-empty", (*E, "--classes", "a,,b,c,d"), 1, "comma-separated"),
    ("export-classes-equals", (*E, "--classes", "a=1,b,c,d,e"), 1, "cannot be used"),
    ("export-classes-onnx", ("export", "{onnx}", "-o", "{out}", "--format", "triton", "--classes", "a,b,c,d,e"),
     1, "--classes"),
    ("export-onnx-to-onnx", ("export", "{onnx}", "-o", "{out}"), 1, "already an onnx graph"),
    ("export-out-is-folder", ("export", "{st}", "-o", "{tmp}"), 1, "is a folder"),
    # train (nothing may be written)
    ("train-lr-nan", (*T, "--lr", "nan"), 2, "--lr"),
    ("train-lr-negative", (*T, "--lr", "-1"), 2, "--lr"),
    ("train-lr-inf", (*T, "--lr", "inf"), 2, "--lr"),
    ("train-ema-nan", (*T, "--ema-decay", "nan"), 2, "--ema-decay"),
    ("train-ema-above-1", (*T, "--ema-decay", "1.5"), 2, "--ema-decay"),
    ("train-cond-drop-nan", (*T, "--cond-drop", "nan"), 2, "--cond-drop"),
    ("train-class-balance-nan", (*T, "--class-balance", "nan"), 2, "--class-balance"),
    ("train-epochs-zero", (*T, "--epochs", "0"), 2, "--epochs"),
    ("train-batch-zero", (*T, "--batch-size", "0"), 2, "--batch-size"),
    ("train-timesteps-one", (*T, "--timesteps", "1"), 2, "--timesteps"),
    ("train-schedule", (*T, "--schedule", "sigmoid"), 2, "--schedule"),
    ("train-save-every-zero", (*T, "--save-every", "0"), 2, "--save-every"),
    ("train-dataset-unknown", ("train", "--dataset", "cifar", "--out", "{out}"), 1, "unknown dataset"),
    # bench / eval / info
    ("bench-batch-zero", (*B[:-1], "0"), 2, "--batch"),
    ("bench-guidance-nan", (*B, "--guidance", "nan"), 2, "--guidance"),
    ("bench-steps-zero", ("bench", "{onnx}", "--steps", "0"), 2, "--steps"),
    ("bench-repeats-zero", ("bench", "{onnx}", "--repeats", "0"), 2, "--repeats"),
    ("eval-per-class-one", ("eval", "{onnx}", "--per-class", "1"), 2, "--per-class"),
    ("eval-seed-negative", ("eval", "{onnx}", "--seed", "-1"), 2, "--seed"),
    ("info-no-path", ("info",), 2, "missing argument"),
    ("no-such-command", ("paint",), 2, "no such command"),
]
