"""The bad-input corpus through the real CLI: every hostile file and flag value is one ``error:`` line, exit 1
(2 for usage errors), no traceback, no output file, and no pickled code ever runs.

The bulk runs in-process through :func:`difftool.cliexit.run` (what the ``difftool`` console script runs);
a sample runs as real subprocesses, where exit codes and tracebacks cannot be faked.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="the corpus builds checkpoints with torch")
pytest.importorskip("safetensors")

import difftool  # noqa: E402
from badinput.corpus import FILES, GOOD, MARKER, build, commands_for  # noqa: E402
from badinput.flags import FLAGS  # noqa: E402
from difftool.cli import app  # noqa: E402
from difftool.cliexit import run  # noqa: E402

FILE_CASES = [(name, cmd) for name in FILES for cmd in commands_for(name)]
SRC = str(Path(difftool.__file__).resolve().parents[1])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    return root, build(root)


def _args(cmd: str, path: Path, out: Path) -> list[str]:
    fast = ["--steps", "2", "--n", "2", "--threads", "1"]
    return {"info": ["info", str(path)],
            "export": ["export", str(path), "-o", str(out)],
            "sample": ["sample", str(path), "-o", str(out), *fast],
            "generate": ["generate", str(path), "-o", str(out), *fast]}[cmd]


def _cli(capsys, args) -> tuple[int, list[str]]:
    code = run(app, [str(a) for a in args])
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return code, [line for line in err.splitlines() if line.strip()]


def _assert_one_error(code, lines, want_code, needle):
    assert code == want_code, lines
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: "), lines
    assert needle.lower() in lines[0].lower(), lines[0]
    assert "weights_only=false" not in lines[0].lower().replace(" ", "")


def test_corpus_is_large_and_every_file_exists(corpus):
    root, paths = corpus
    assert len(FILE_CASES) + len(FLAGS) >= 100
    for name, path in paths.items():
        if name != "missing_pth":
            assert path.exists(), name


@pytest.mark.parametrize("name, cmd", FILE_CASES, ids=[f"{n}-{c}" for n, c in FILE_CASES])
def test_bad_file(corpus, capsys, tmp_path, name, cmd):
    root, paths = corpus
    out = tmp_path / ("out.onnx" if cmd == "export" else "out.png")
    code, lines = _cli(capsys, _args(cmd, paths[name], out))
    _assert_one_error(code, lines, 1, FILES[name][1])
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no temp file left behind either
    assert not (root / MARKER).exists(), "a pickle in the corpus ran code"


@pytest.mark.parametrize("name", GOOD)
@pytest.mark.parametrize("cmd", ["info", "generate"])
def test_good_files_pass(corpus, capsys, tmp_path, name, cmd):
    """The controls: the files the bad ones are derived from work, so the failures above are the lies."""
    out = tmp_path / "out.png"
    code = run(app, _args(cmd, corpus[1][name], out))
    assert code == 0, capsys.readouterr().err
    assert out.exists() == (cmd == "generate")


@pytest.mark.parametrize("case_id, args, want, needle", FLAGS, ids=[f[0] for f in FLAGS])
def test_bad_flag(corpus, capsys, tmp_path, case_id, args, want, needle):
    paths = corpus[1]
    out = tmp_path / "out" / ("out.onnx" if args[0] == "export" else "out.png")
    out.parent.mkdir()
    values = {"st": paths["base_st"], "course": paths["base_course"], "onnx": paths["base_onnx"],
              "uncond": paths["base_uncond"], "out": out, "tmp": tmp_path}
    code, lines = _cli(capsys, [a.format(**values) for a in args])
    _assert_one_error(code, lines, want, needle)
    assert list(out.parent.iterdir()) == []


def test_class_by_index_and_generic_names(corpus, capsys, tmp_path):
    """A course model gets the course's names at 5 classes; --class by index always works."""
    out = tmp_path / "a.png"
    code = run(app, ["sample", str(corpus[1]["base_course"]), "--class", "3", "--steps", "2", "--n", "1",
                     "-o", str(out)])
    assert code == 0 and out.exists(), capsys.readouterr().err


SUBPROCESS = [
    (["info", "{html_pth}"], 1, "html page"),
    (["sample", "{evil_zip}", "-o", "{out}", "--steps", "2"], 1, "pickled python objects"),
    (["export", "{course_nan}", "-o", "{out}"], 1, "non-finite"),
    (["generate", "{st_huge}", "-o", "{out}", "--steps", "2", "--n", "2"], 1, "non-finite values"),
    (["generate", "{onnx_nan}", "-o", "{out}"], 1, "non-finite weights"),
    (["info", "{st_lying_offsets}"], 1, "corrupt"),
    (["sample", "{base_st}", "-o", "{out}", "--guidance", "nan"], 2, "--guidance"),
    (["sample", "{base_st}", "-o", "{out}", "--seed", "-1"], 2, "--seed"),
]


@pytest.mark.parametrize("args, want, needle", SUBPROCESS, ids=[f"{a[0]}-{a[1].strip('{}')}" for a, _, _ in SUBPROCESS])
def test_subprocess_sample(corpus, tmp_path, args, want, needle):
    root, paths = corpus
    out = tmp_path / "o.png"
    argv = [a.format(out=out, **paths) for a in args]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": SRC, "COLUMNS": "200"}
    proc = subprocess.run([sys.executable, "-m", "difftool", *argv], capture_output=True, text=True, env=env,
                          timeout=300)
    assert "Traceback" not in proc.stderr + proc.stdout
    _assert_one_error(proc.returncode, [x for x in proc.stderr.splitlines() if x.strip()], want, needle)
    assert not out.exists()
    assert not (root / MARKER).exists()


def test_export_classes_are_stored_in_the_card(corpus, capsys, tmp_path):
    """Generic names for an imported model, replaced by --classes at export; --class by name then works."""
    pytest.importorskip("onnxscript")
    from difftool.runtime.artifact import read_card

    course = corpus[1]["base_course"]
    out = tmp_path / "course.onnx"
    assert run(app, ["export", str(course), "-o", str(out), "--classes", "a,b,c,d,e"]) == 0, capsys.readouterr().err
    assert read_card(out).class_names == ("a", "b", "c", "d", "e")
    png = tmp_path / "c.png"
    assert run(app, ["generate", str(out), "--class", "c", "--steps", "2", "--n", "1", "-o", str(png)]) == 0
    assert png.exists()


def test_class_names_of_imported_models():
    from difftool.config import ContextUnetConfig
    from difftool.models import build
    from difftool.models.checkpoint import COURSE_CLASSES, card_from_state_dict

    five = build(ContextUnetConfig(n_feat=8, n_cfeat=5)).state_dict()
    ten = build(ContextUnetConfig(n_feat=8, n_cfeat=10)).state_dict()
    assert card_from_state_dict(five).class_names == COURSE_CLASSES
    assert card_from_state_dict(ten).class_names == tuple(f"class{i}" for i in range(10))
    assert card_from_state_dict(ten).class_index("9") == 9
