"""benchmarks/gpu_check.py: its notebook-to-script conversion, and its CPU-sized run end to end.

The CPU-sized run is what `make gpu-check` does without a GPU (and what this test runs, with
COURSE_PROFILE=smallest, on any machine): the quick items run, the other notebooks are
converted to scripts and compiled. It keeps the GPU run, which has no Jupyter, working.
"""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
gpu_check = sys.modules["gpu_check"] = importlib.util.module_from_spec(spec)  # dataclasses look it up
spec.loader.exec_module(gpu_check)


def notebook(tmp_path, *sources):
    cells = [{"cell_type": "markdown", "metadata": {}, "source": ["# title"]}] + [
        {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None, "source": [s]} for s in sources]
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    return path


def test_notebook_becomes_a_script_that_plain_python_runs(tmp_path):
    path = notebook(
        tmp_path,
        "%matplotlib inline\nimport matplotlib.pyplot as plt\nx = 6 * 7\nx",
        "%%bash\necho this is not python",
        "!pip install nothing\ny = 'é'; y + 'à'",
        "x + 1;",
        "print('printed'); None",
        "plt.plot([1, 2, 3])\nplt.show()\n{'a': (1,\n       2)}",
        "display(x * 2)",
    )
    script = tmp_path / "nb.py"
    script.write_text(gpu_check.notebook_to_script(path))
    env = dict(os.environ, GPU_CHECK_FIGURES=str(tmp_path / "fig"), MPLBACKEND="Agg")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["42", "'éà'", "printed", "{'a': (1, 2)}", "84"]
    assert (tmp_path / "fig_01.png").stat().st_size > 1000


def test_result_lines_drop_progress_bars_and_keep_results():
    item = gpu_check.Item("n", "notebook", [], ".", status="ok")
    output = ("training:  10%|#         | 1/10\rtraining: 100%|##########| 10/10\n"
              "some chatter\nvalidation loss 1.234\nBLEU 25.1\n")
    assert gpu_check.result_lines(item, output) == ["validation loss 1.234", "BLEU 25.1"]
    failed = gpu_check.Item("b", "benchmark", [], ".", status="failed (exit 1)")
    assert gpu_check.result_lines(failed, "a\nTraceback\nValueError: x\n")[-1] == "ValueError: x"


def test_an_only_run_keeps_the_earlier_items(tmp_path):
    items = [gpu_check.Item("a", "benchmark", [], ".", status="ok", lines=["1.0 ms"])]
    gpu_check.write_results(tmp_path, "full", gpu_check.machine(), items)
    assert [i.lines for i in gpu_check.previous_items(tmp_path, "full")] == [["1.0 ms"]]
    assert gpu_check.previous_items(tmp_path, "smallest") == []


def test_cpu_sized_run(tmp_path):
    env = dict(os.environ, COURSE_PROFILE="smallest")
    env.pop("NBGRADER_EXECUTION", None)
    done = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--out", str(tmp_path)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads((tmp_path / "results.json").read_text())
    status = {i["name"]: i["status"] for i in results["items"]}
    notebooks = {p.name for p in (ROOT / "solutions").iterdir() if p.name[:2].isdigit() and int(p.name[:2]) >= 6}
    assert notebooks <= status.keys() and {"bench_attention_cost", "bench_multihead"} <= status.keys()
    assert "bench_grading" not in status
    for name in gpu_check.QUICK_ON_CPU:
        assert status[name] == "ok", (tmp_path / "logs" / f"{name}.log").read_text()[-3000:]
    assert all(s in ("ok", "compiled (not run)") for s in status.values()), status
    for name in notebooks:
        assert (tmp_path / "scripts" / f"{name}.py").exists()
    summary = (tmp_path / "results.md").read_text()
    assert all(f"## {name} " in summary for name in status)
    assert "flash (cpu)" in summary or "flash" in summary   # the attention benchmark's table made it in
    assert list((tmp_path / "figures").glob("09_efficient_attention_*.png"))
    print(f"CPU-sized gpu check: {sum(i['seconds'] for i in results['items']):.0f} s of item time")
