"""The sprite judge's network and its training (needs torch; imported only by the training script).

A small CNN on 16x16 RGB sprites in [-1, 1] (about 160k parameters, ~0.6 MB as ONNX):

* a silhouette plane (1 where any channel is above 13/255, else -1) is appended to the RGB input, so the
  sprite's shape is explicit (DawnLike has many palette swaps: shape generalises, colour alone does not);
* three conv blocks (32, 64, 128 channels; BatchNorm + ReLU; max-pool after the first two);
* the 4x4x128 map is average-pooled to 2x2 and projected to the 128-d feature vector (post-ReLU), the
  space the Fréchet distance is measured in; a linear layer maps it to the five class logits;
* in eval mode (and in the exported graph) the sprite and its mirror image are averaged (flip-invariant).

Training: the labelled DawnLike + Kenney tiles, ~20% of each class's *sprites* held out
(:func:`difftool.eval.data.split_by_identity`: both animation frames of a sprite on one side),
class-balanced sampling, AdamW + one-cycle, label smoothing, and augmentation that keeps pixel art crisp:
horizontal flips, 1-px translations and random RGB channel permutations (a palette swap: every pixel keeps
an exact colour, no interpolation). Export: a single ONNX file with input ``x`` [B, 3, 16, 16] and outputs
``logits`` [B, 5] and ``features`` [B, 128] (see :func:`export_onnx`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from difftool.eval.data import SpriteTiles, split_by_identity

FEATURE_DIM = 128
METADATA_KEY = "difftool_judge"  # JSON blob in the ONNX metadata_props
JUDGE_CREDIT = (
    "Trained on DawnLike 16x16 Universal Rogue-like tileset v1.81 by DragonDePlatino, palette by DawnBringer "
    "(CC-BY-SA 3.0, https://opengameart.org/content/dawnlike-16x16-universal-rogue-like-tileset-v181), and "
    "Kenney Tiny Dungeon (CC0 1.0, https://kenney.nl)."
)
JUDGE_LICENSE = "CC-BY-SA-3.0"


def _block(cin: int, cout: int, convs: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(convs):
        layers += [
            nn.Conv2d(cin if i == 0 else cout, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        ]
    return nn.Sequential(*layers)


class SpriteClassifier(nn.Module):
    """x (B, 3, 16, 16) in [-1, 1] -> (logits (B, K), features (B, 128))."""

    def __init__(
        self,
        num_classes: int = 5,
        widths: tuple[int, int, int] = (32, 64, 128),
        dropout: float = 0.2,
        silhouette: bool = True,
        flip_tta: bool = True,
        spatial: bool = True,
    ):
        super().__init__()
        self.flip_tta = flip_tta
        self.spatial = spatial
        w1, w2, w3 = widths
        self.silhouette = silhouette
        self.block1 = _block(4 if silhouette else 3, w1, 2)  # 16x16
        self.block2 = _block(w1, w2, 2)  # 8x8
        self.block3 = _block(w2, w3, 1)  # 4x4
        if spatial:  # keep coarse layout: 2x2 pooled map -> 128-d feature
            self.project = nn.Sequential(nn.Flatten(), nn.Linear(w3 * 4, FEATURE_DIM), nn.ReLU(inplace=True))
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(w3, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.flip_tta and not self.training:  # average the sprite and its mirror image (flip-invariant)
            b = x.shape[0]
            logits, features = self._forward(torch.cat([x, x.flip(-1)]))
            return (logits[:b] + logits[b:]) * 0.5, (features[:b] + features[b:]) * 0.5
        return self._forward(x)

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.silhouette:  # a 4th input plane: 1 where the sprite is (any channel above 13/255; the darkest DawnBringer colour is 28/255), else -1
            mask = (x.amax(dim=1, keepdim=True) > -0.9).to(x.dtype) * 2.0 - 1.0
            x = torch.cat([x, mask], dim=1)
        h = F.max_pool2d(self.block1(x), 2)
        h = F.max_pool2d(self.block2(h), 2)
        h = self.block3(h)
        if self.spatial:
            features = self.project(F.avg_pool2d(h, 2))
        else:
            features = h.mean(dim=(2, 3))  # (B, 128) global average pool, post-ReLU
        return self.head(self.dropout(features)), features


def augment(x: torch.Tensor, generator: torch.Generator, channel_shuffle: bool = False) -> torch.Tensor:
    """Random horizontal flips, translations of up to 1 px (borders filled with black, -1) and, with
    ``channel_shuffle``, a random permutation of the RGB channels per image."""
    b = x.shape[0]
    if channel_shuffle:
        perm = torch.argsort(torch.rand(b, 3, generator=generator), dim=1)  # (B, 3)
        x = torch.gather(x, 1, perm[:, :, None, None].expand_as(x))
    flip = torch.rand(b, generator=generator) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    padded = F.pad(x, (1, 1, 1, 1), value=-1.0)  # (B, C, 18, 18)
    dy = torch.randint(0, 3, (b,), generator=generator)
    dx = torch.randint(0, 3, (b,), generator=generator)
    size = x.shape[-1]
    rows = dy[:, None] + torch.arange(size)[None, :]  # (B, 16)
    cols = dx[:, None] + torch.arange(size)[None, :]  # (B, 16)
    idx_b = torch.arange(b)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[idx_b, rows[:, :, None], cols[:, None, :]]  # (B, 16, 16, C)
    return out.permute(0, 3, 1, 2).contiguous()


@dataclass
class TrainResult:
    model: SpriteClassifier
    class_names: tuple[str, ...]
    heldout_accuracy: dict[str, float]  # per class, plus "overall"
    heldout_counts: dict[str, int]
    train_counts: dict[str, int]
    confusion: list[list[int]]  # [true][pred] on the held-out split
    seconds: float
    config: dict = field(default_factory=dict)


@torch.inference_mode()
def predict(model: nn.Module, images: np.ndarray, batch: int = 512) -> np.ndarray:
    """Argmax class of each image (eval mode)."""
    model.eval()
    out = []
    for i in range(0, len(images), batch):
        logits, _ = model(torch.from_numpy(images[i : i + batch]))
        out.append(logits.argmax(1).numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def train_classifier(
    tiles: SpriteTiles,
    *,
    seed: int = 0,
    holdout: float = 0.2,
    held: np.ndarray | None = None,
    dropout: float = 0.2,
    silhouette: bool = True,
    channel_shuffle: bool = True,
    widths: tuple[int, int, int] = (32, 64, 128),
    spatial: bool = True,
    epochs: int = 100,
    batch_size: int = 64,
    lr: float = 3e-3,
    weight_decay: float = 5e-4,
    label_smoothing: float = 0.05,
    log: Callable[[str], None] | None = print,
) -> TrainResult:
    """Train on the non-held-out identities with class-balanced sampling; evaluate on the held-out ones."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    if held is None:
        held = split_by_identity(tiles.identity, tiles.labels, holdout, seed)
    train, test = tiles.subset(~held), tiles.subset(held)
    k = len(tiles.class_names)
    model = SpriteClassifier(
        num_classes=k, widths=tuple(widths), dropout=dropout, silhouette=silhouette, spatial=spatial
    )
    start = time.perf_counter()
    _fit(model, train, test, gen, epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
         label_smoothing=label_smoothing, channel_shuffle=channel_shuffle, log=log)
    confusion, per_class = _heldout_scores(model, test, tiles.class_names)
    config = {
        "seed": seed, "holdout": holdout, "epochs": epochs, "batch_size": batch_size, "lr": lr,
        "weight_decay": weight_decay, "dropout": dropout, "silhouette": silhouette, "spatial": spatial,
        "channel_shuffle": channel_shuffle, "widths": list(widths), "label_smoothing": label_smoothing,
        "split": "by sprite identity (both animation frames together), per class, "
        "difftool.eval.data.split_by_identity",
        "sampling": "class-balanced",
        "augmentation": "hflip, 1px translation" + (", RGB channel permutation" if channel_shuffle else ""),
    }
    return TrainResult(model=model.eval(), class_names=tiles.class_names, heldout_accuracy=per_class,
                       heldout_counts=test.class_counts(), train_counts=train.class_counts(),
                       confusion=confusion.tolist(), seconds=time.perf_counter() - start, config=config)


def _fit(model: SpriteClassifier, train: SpriteTiles, test: SpriteTiles, gen: torch.Generator, *, epochs: int,
         batch_size: int, lr: float, weight_decay: float, label_smoothing: float, channel_shuffle: bool,
         log: Callable[[str], None] | None) -> None:
    """AdamW + one-cycle lr over class-balanced batches (drawn with replacement), augmented."""
    x, y = torch.from_numpy(train.images), torch.from_numpy(train.labels)
    counts = np.bincount(train.labels, minlength=model.head.out_features).astype(np.float64)
    sample_w = torch.from_numpy(1.0 / counts[train.labels])  # class-balanced sampling
    steps_per_epoch = max(1, len(train) // batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch,
                                                pct_start=0.15)
    start = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        idx = torch.multinomial(sample_w, steps_per_epoch * batch_size, replacement=True, generator=gen)
        running = 0.0
        for s in range(steps_per_epoch):
            b = idx[s * batch_size : (s + 1) * batch_size]
            logits, _ = model(augment(x[b], gen, channel_shuffle))
            loss = F.cross_entropy(logits, y[b], label_smoothing=label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            running += float(loss.detach())
        if log and (epoch % 10 == 9 or epoch == epochs - 1):
            acc = float((predict(model, test.images) == test.labels).mean())
            log(f"epoch {epoch + 1}/{epochs} loss {running / steps_per_epoch:.4f} held-out acc {acc:.4f} "
                f"({time.perf_counter() - start:.0f}s)")


def _heldout_scores(model: SpriteClassifier, test: SpriteTiles, class_names) -> tuple[np.ndarray, dict]:
    """The held-out confusion matrix and accuracy per class, class-balanced and overall."""
    k = len(class_names)
    pred = predict(model, test.images)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (test.labels, pred), 1)
    per_class = {name: float(confusion[i, i] / max(1, confusion[i].sum())) for i, name in enumerate(class_names)}
    per_class["balanced"] = float(np.mean([per_class[n] for n in class_names]))
    per_class["overall"] = float((pred == test.labels).mean())
    return confusion, per_class


class _Export(nn.Module):
    def __init__(self, model: SpriteClassifier):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model(x)


def export_onnx(result: TrainResult, out: str | Path, data_name: str = "") -> Path:
    """Write the trained judge to ONNX (``x`` -> ``logits``, ``features``; dynamic batch) with metadata."""
    import onnx

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.onnx")
    model = _Export(result.model).eval()
    dummy = torch.zeros(2, 3, 16, 16)
    torch.onnx.export(
        model,
        (dummy,),
        str(tmp),
        input_names=["x"],
        output_names=["logits", "features"],
        dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}, "features": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    proto = onnx.load(str(tmp))
    meta = {
        "format": 1,
        "input": {"name": "x", "shape": ["batch", 3, 16, 16], "range": [-1.0, 1.0]},
        "outputs": {"logits": ["batch", len(result.class_names)], "features": ["batch", FEATURE_DIM]},
        "class_names": list(result.class_names),
        "heldout_accuracy": result.heldout_accuracy,
        "heldout_counts": result.heldout_counts,
        "train_counts": result.train_counts,
        "confusion": result.confusion,
        "training": {**result.config, "data": data_name, "seconds": round(result.seconds, 1)},
        "credit": JUDGE_CREDIT,
        "license": JUDGE_LICENSE,
    }
    props = {
        METADATA_KEY: json.dumps(meta, sort_keys=True),
        "class_names": json.dumps(list(result.class_names)),
        "heldout_accuracy": json.dumps(result.heldout_accuracy, sort_keys=True),
        "credit": JUDGE_CREDIT,
        "license": JUDGE_LICENSE,
    }
    del proto.metadata_props[:]
    for key, value in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "difftool"
    proto.doc_string = "difftool sprite judge: 16x16 RGB sprite classifier (logits) + 128-d features for FID"
    onnx.checker.check_model(proto)
    from difftool.fileio import atomic_write

    atomic_write(out, lambda path: onnx.save(proto, str(path), save_as_external_data=False))
    tmp.unlink(missing_ok=True)
    return out
