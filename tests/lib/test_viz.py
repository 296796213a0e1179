"""The figures: every architecture figure draws, is written beside its notebook (``make figures``)
and is shown by it; the attention heatmaps carry colour bars and axis labels."""
import json
from pathlib import Path

import matplotlib
import pytest
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from course_lib import viz  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
FIGURES = [(notebook, name, draw) for notebook, figures in viz.FIGURES.items() for name, draw in figures.items()]


@pytest.mark.parametrize("notebook, name, draw", FIGURES, ids=[name for _, name, _ in FIGURES])
def test_figure_draws_and_its_notebook_shows_it(notebook, name, draw):
    fig = draw()
    assert fig.axes and any(ax.texts or ax.images for ax in fig.axes)
    plt.close(fig)
    assert (ROOT / "solutions" / notebook / name).is_file(), f"run `make figures`: {name} is missing"
    cells = json.loads((ROOT / "solutions" / notebook / f"{notebook}.ipynb").read_text())["cells"]
    assert any(f"]({name})" in "".join(c["source"]) for c in cells if c["cell_type"] == "markdown"), \
        f"{notebook} does not show {name}"


def test_write_figures_writes_png(tmp_path):
    for notebook in viz.FIGURES:
        (tmp_path / notebook).mkdir()
    written = viz.write_figures(str(tmp_path))
    assert len(written) == len(FIGURES)
    assert all(Path(p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in written)


def test_plot_heads_has_a_colour_bar_and_axis_labels():
    weights = torch.softmax(torch.randn(2, 4, 4), dim=-1)
    fig = viz.plot_heads(weights, list("abcd"), title="t")
    heads, bar = fig.axes[:2], fig.axes[2]
    assert len(fig.axes) == 3 and bar.get_ylabel() == "attention weight"
    assert heads[0].get_ylabel() and all(ax.get_xlabel() for ax in heads)
    plt.close(fig)
    with pytest.raises(ValueError, match="num_heads"):
        viz.plot_heads(weights, list("abc"))


def test_plot_layer_heads_grid():
    weights = torch.softmax(torch.randn(2, 3, 4, 5), dim=-1)
    fig = viz.plot_layer_heads(weights, list("abcd"), list("vwxyz"))
    assert len(fig.axes) == 2 * 3 + 1
    plt.close(fig)
    with pytest.raises(ValueError, match="layers, heads"):
        viz.plot_layer_heads(weights[0], list("abcd"), list("vwxyz"))
