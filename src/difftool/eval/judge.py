"""The sprite judge: the shipped classifier ONNX run with onnxruntime (no torch).

``Judge.load()`` opens ``difftool/assets/sprite_classifier.onnx``; ``judge.predict(x)`` maps (N, 3, 16, 16)
float32 sprites in [-1, 1] to class probabilities (N, 5) and 128-d features (N, 128).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from difftool.errors import DifftoolError, MissingDependency

METADATA_KEY = "difftool_judge"
DEFAULT_ASSET = Path(__file__).resolve().parents[1] / "assets" / "sprite_classifier.onnx"


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


@dataclass
class Judge:
    """A loaded sprite classifier (onnxruntime session + the metadata stored beside its weights)."""

    session: Any
    class_names: tuple[str, ...]
    heldout_accuracy: dict[str, float] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    image_size: int = 16
    channels: int = 3

    @classmethod
    def load(cls, path: str | Path | None = None, threads: int = 1) -> Judge:
        """Open the judge ONNX (default: the classifier shipped with difftool) on the onnxruntime CPU EP."""
        path = Path(path) if path is not None else DEFAULT_ASSET
        if not path.is_file():
            raise DifftoolError(
                f"sprite judge {path} does not exist; reinstall difftool or regenerate it with "
                "scripts/train_sprite_classifier.py"
            )
        try:
            import onnxruntime as ort
        except ImportError:
            raise MissingDependency("onnxruntime", "gpu", "the sprite judge") from None
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, int(threads))
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise DifftoolError(f"cannot load sprite judge {path} ({exc}); the file is corrupt") from None
        props = session.get_modelmeta().custom_metadata_map
        try:
            meta = json.loads(props[METADATA_KEY])
            class_names = tuple(meta["class_names"])
        except (KeyError, ValueError, TypeError):
            raise DifftoolError(
                f"{path} is not a difftool sprite judge (no {METADATA_KEY} metadata)"
            ) from None
        outputs = {o.name for o in session.get_outputs()}
        if not {"logits", "features"} <= outputs:
            raise DifftoolError(f"{path} lacks the logits/features outputs of a sprite judge")
        shape = session.get_inputs()[0].shape
        return cls(
            session=session,
            class_names=class_names,
            heldout_accuracy=dict(meta.get("heldout_accuracy", {})),
            metadata=meta,
            path=path,
            image_size=int(shape[-1]),
            channels=int(shape[1]),
        )

    @property
    def feature_dim(self) -> int:
        return int(self.session.get_outputs()[1].shape[-1])

    @property
    def credit(self) -> str:
        return str(self.metadata.get("credit", ""))

    @property
    def license(self) -> str:
        return str(self.metadata.get("license", ""))

    def predict(self, x: np.ndarray, batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """(N, 3, 16, 16) images in [-1, 1] -> (probs (N, K) float32, features (N, 128) float32).

        Inputs are clipped to [-1, 1] first (sampler outputs may overshoot slightly).
        """
        x = np.asarray(x, dtype=np.float32)
        expected = (self.channels, self.image_size, self.image_size)
        if x.ndim != 4 or x.shape[1:] != expected:
            raise DifftoolError(
                f"the sprite judge takes (N, {', '.join(map(str, expected))}) images, got {x.shape}"
            )
        probs, feats = [], []
        for i in range(0, len(x), batch):
            chunk = np.ascontiguousarray(np.clip(x[i : i + batch], -1.0, 1.0))
            logits, features = self.session.run(["logits", "features"], {"x": chunk})
            probs.append(softmax(logits.astype(np.float32)))
            feats.append(features.astype(np.float32))
        if not probs:
            k = len(self.class_names)
            return np.zeros((0, k), np.float32), np.zeros((0, self.feature_dim), np.float32)
        return np.concatenate(probs), np.concatenate(feats)
