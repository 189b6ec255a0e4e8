"""Non-finite sampling output is an error wherever images are made, never a silently black/white image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from difftool.errors import DifftoolError
from difftool.runtime.images import check_finite, to_uint8


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_to_uint8_rejects_non_finite(bad):
    x = np.zeros((3, 3, 4, 4), np.float32)
    x[1, 0, 2, 2] = bad
    with pytest.raises(DifftoolError, match=r"non-finite values \(NaN or inf\) in 1 of 3 image"):
        to_uint8(x)
    check_finite(np.zeros((2, 3, 4, 4), np.float32))  # finite passes
    assert to_uint8(np.full((1, 3, 2, 2), 5.0, np.float32)).max() == 255  # large but finite: clipped


def test_pipeline_mix_weights_must_be_finite(fake_denoiser):
    from difftool.runtime.pipeline import Pipeline

    pipe = Pipeline(fake_denoiser)
    for spec in ("hero=nan", "hero=inf", "hero=-inf,food=1", "hero=1e400", "hero=101"):
        with pytest.raises(DifftoolError, match="finite number"):
            pipe.context_from_spec(spec, 2)
    assert pipe.context_from_spec("hero=-0.5,food=1.5", 1).tolist()[0][:3] == [-0.5, 0.0, 1.5]


async def test_tui_non_finite_generation_is_a_failure_not_a_sprite(tmp_path: Path) -> None:
    pytest.importorskip("textual")
    from difftool.tui.demo import DemoPipeline
    from test_tui import SIZE, errors, generate, make_app, ready

    class NaNPipeline(DemoPipeline):
        def sample(self, request, callback=None):
            out = super().sample(request, callback)
            return np.full_like(out, np.nan)

    app = make_app(tmp_path, NaNPipeline())
    async with app.run_test(size=SIZE) as pilot:
        await ready(app, pilot)
        await generate(app, pilot)
        assert any("non-finite" in e for e in errors(app)), errors(app)
        assert app.current is None and "failed" in app.status_text
