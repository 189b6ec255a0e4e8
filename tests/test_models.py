"""Models and checkpoints: reference state-dict layouts, strict loading, safetensors round trip, errors."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="model tests need torch (pip install 'difftool[train]')")

from difftool.config import ContextUnetConfig, ModelCard, ScheduleConfig, UnetConfig  # noqa: E402
from difftool.errors import DifftoolError  # noqa: E402
from difftool.models import build, presets  # noqa: E402
from difftool.models.checkpoint import load, save  # noqa: E402

torch.set_num_threads(1)


def test_course_state_dict_layout_matches_reference():
    sd = build(ContextUnetConfig()).state_dict()
    assert len(sd) == 156
    assert sum(v.numel() for k, v in sd.items() if "num_batches_tracked" not in k and "running" not in k) == 1_480_771
    assert list(sd)[0] == "init_conv.conv1.0.weight" and list(sd)[-1] == "out.3.bias"
    assert tuple(sd["up0.0.weight"].shape) == (128, 128, 4, 4)
    assert tuple(sd["up1.model.0.weight"].shape) == (256, 64, 2, 2)
    assert tuple(sd["contextembed1.model.0.weight"].shape) == (128, 5)
    assert sd["init_conv.conv1.1.num_batches_tracked"].dtype == torch.int64


def test_explainingai_state_dict_layout_matches_reference():
    sd = build(UnetConfig()).state_dict()
    assert len(sd) == 330
    assert sum(v.numel() for v in sd.values()) == 10_188_081
    assert list(sd)[:2] == ["t_proj.0.weight", "t_proj.0.bias"]
    assert tuple(sd["downs.1.attentions.0.in_proj_weight"].shape) == (384, 128)
    assert tuple(sd["mids.1.resnet_conv_first.0.2.weight"].shape) == (128, 256, 3, 3)
    assert tuple(sd["ups.0.residual_input_conv.0.weight"].shape) == (64, 256, 1, 1)
    assert tuple(sd["ups.2.attentions.1.in_proj_weight"].shape) == (48, 16)
    assert "downs.2.down_sample_conv.weight" not in sd


def test_attention_matches_torch_multihead_attention():
    from difftool.models.unet import SelfAttention

    torch.manual_seed(0)
    ours = SelfAttention(32, 4)
    ref = torch.nn.MultiheadAttention(32, 4, batch_first=True)
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(3, 10, 32)
    torch.testing.assert_close(ours(x), ref(x, x, x, need_weights=False)[0], atol=1e-5, rtol=1e-5)


def test_course_pth_loads_strictly_and_recovers_config(tmp_path):
    torch.manual_seed(1)
    model = build(ContextUnetConfig(n_feat=32, n_cfeat=5, height=16))
    path = tmp_path / "context_model_31.pth"
    torch.save(model.state_dict(), path)
    loaded = load(path)
    assert loaded.card.source == "course"
    assert loaded.card.model == ContextUnetConfig(in_channels=3, n_feat=32, n_cfeat=5, height=16)
    assert loaded.card.schedule == ScheduleConfig.course()
    x, t, c = torch.randn(2, 3, 16, 16), torch.tensor([0.5, 0.1]), torch.eye(5)[:2]
    with torch.no_grad():
        torch.testing.assert_close(loaded.module(x, t, c), model.eval()(x, t, c))


def test_course_forward_is_deterministic():
    """The course's random in-forward shortcut is replaced by its expectation (zero)."""
    model = build(ContextUnetConfig(n_feat=16)).eval()
    x, t, c = torch.randn(2, 3, 16, 16), torch.tensor([0.3, 0.3]), torch.zeros(2, 5)
    with torch.no_grad():
        assert torch.equal(model(x, t, c), model(x, t, c))


def test_course_loading_is_strict(tmp_path):
    sd = build(ContextUnetConfig(n_feat=16)).state_dict()
    sd.pop("out.3.bias")
    torch.save(sd, tmp_path / "broken.pth")
    with pytest.raises(DifftoolError, match="do not fit"):
        load(tmp_path / "broken.pth")


def test_explainingai_pth_loads_strictly(tmp_path):
    cfg = UnetConfig(down_channels=(16, 32, 32, 64), mid_channels=(64, 64, 32), time_emb_dim=32)
    model = build(cfg)
    torch.save(model.state_dict(), tmp_path / "ddpm_ckpt.pth")
    loaded = load(tmp_path / "ddpm_ckpt.pth")
    assert loaded.card.source == "explainingai"
    assert loaded.card.model == cfg
    x, t = torch.randn(2, 1, 28, 28), torch.tensor([10.0, 999.0])
    with torch.no_grad():
        torch.testing.assert_close(loaded.module(x, t), model.eval()(x, t))


def test_explainingai_time_truncates_like_long():
    model = build(presets.tiny(channels=1, size=8, num_classes=0)).eval()
    x = torch.randn(1, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(model(x, torch.tensor([10.9])), model(x, torch.tensor([10.0])))


def test_safetensors_round_trip(tmp_path):
    cfg = presets.tiny(channels=3, size=8, num_classes=5)
    card = ModelCard(model=cfg, schedule=ScheduleConfig(kind="cosine"), class_names=("a", "b", "c", "d", "e"),
                     credit="test credit", license="CC0-1.0")
    model = build(cfg)
    path = save(tmp_path / "m.safetensors", model, card)
    loaded = load(path)
    assert loaded.card == card
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.module.state_dict()[k], v)
    assert not list(tmp_path.glob("*.tmp"))


def test_class_context_mixes_linearly():
    """Embedding = c @ E + (1 - sum c) * null: zeros = null class, one-hot = class, mixes interpolate."""
    model = build(presets.tiny(channels=3, size=8, num_classes=3)).eval()
    with torch.no_grad():
        model.null_embedding.normal_()
        t = torch.tensor([5.0, 5.0])
        e = model.embed(t, torch.tensor([[1.0, 0, 0], [0.0, 0, 0]]))
        mix = model.embed(t[:1], torch.tensor([[0.5, 0, 0]]))
    torch.testing.assert_close(mix[0], (e[0] + e[1]) / 2, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(e[0], e[1])


def test_unrecognised_and_corrupt_files(tmp_path):
    torch.save({"foo.weight": torch.zeros(2)}, tmp_path / "other.pth")
    with pytest.raises(DifftoolError, match="unrecognised checkpoint"):
        load(tmp_path / "other.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint at all")
    with pytest.raises(DifftoolError, match="cannot read"):
        load(tmp_path / "junk.pth")
    with pytest.raises(DifftoolError, match="not found"):
        load(tmp_path / "missing.pth")


def test_pickled_objects_are_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(DifftoolError, match="weights_only"):
        load(tmp_path / "evil.pth")
