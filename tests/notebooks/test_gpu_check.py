"""benchmarks/gpu_check.py and stage_gpu_assets.py: the notebook-to-script conversion, the time
budget, and the CPU-sized run end to end on staged assets.

The CPU-sized run is the GPU machine's path (issue 21) at CPU size: stage the assets into a
folder, then run on that folder alone (no hub, no package index), as `make gpu-check` does
without a GPU: the quick items run, the other notebooks are converted to scripts and compiled.
It keeps the GPU run, which has no Jupyter and no registry, working.
"""
import importlib.util
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
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


def test_an_asset_that_did_not_travel_stops_the_script_saying_why(tmp_path):
    path = notebook(tmp_path, "print('before')",
                    "from course_lib.data.assets import AssetNotCarried\nraise AssetNotCarried('94 MiB')",
                    "print('after')")
    script = tmp_path / "nb.py"
    script.write_text(gpu_check.notebook_to_script(path))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert done.returncode == gpu_check.NOT_CARRIED_EXIT, done.stderr
    assert done.stdout.splitlines() == ["before", "gpu_check: stopped at cell 2: 94 MiB"]


def test_an_item_is_killed_at_its_budget_and_keeps_what_it_printed(tmp_path):
    script = tmp_path / "bench_slow.py"
    script.write_text("import time\nprint('figure 1: 2.5 ms', flush=True)\ntime.sleep(60)\nprint('never')\n")
    for folder in ("logs", "figures"):
        (tmp_path / folder).mkdir()
    item = gpu_check.Item("bench_slow", "benchmark", [str(script)], str(tmp_path))
    started = time.perf_counter()
    gpu_check.run(item, item.argv, dict(os.environ), tmp_path, 2, "here")
    assert time.perf_counter() - started < 20
    assert item.status == "timeout after 2 s" and item.lines == ["figure 1: 2.5 ms"]


def test_an_only_run_keeps_the_earlier_items(tmp_path):
    items = [gpu_check.Item("a", "benchmark", [], ".", status="ok", lines=["1.0 ms"])]
    for folder in ("logs", "scripts", "figures"):
        (tmp_path / "work" / folder).mkdir(parents=True)
    gpu_check.write_results(tmp_path, tmp_path / "work", "full", gpu_check.machine(), items, 300, None)
    assert [i.lines for i in gpu_check.previous_items(tmp_path, "full")] == [["1.0 ms"]]
    assert gpu_check.previous_items(tmp_path, "smallest") == []


def test_cpu_sized_run_on_staged_assets(tmp_path):
    assets, out = tmp_path / "assets", tmp_path / "out"
    staged = subprocess.run([sys.executable, "benchmarks/stage_gpu_assets.py", "--out", str(assets)], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert staged.returncode == 0, staged.stdout + staged.stderr
    manifest = json.loads((assets / "manifest.json").read_text())
    assert manifest["fits"] and manifest["total bytes"] <= 64 * 2**20, manifest
    needed = {"janeaustenr", "modeldata", "sword-web", "sword-sparv", "gpt2-bpe", "minilm"}
    assert needed <= manifest["staged bytes"].keys()
    assert "smollm2" in manifest["not carried"]

    # the staged pure-Python packages, imported from their zips, read the staged Austen
    zips = os.pathsep.join(str(z) for z in sorted((assets / "python").glob("*.zip")))
    read = subprocess.run([sys.executable, "-c", "import rdata, xarray, pysword, platformdirs\n"
                           "assert all('.zip' in m.__file__ for m in (rdata, xarray, pysword, platformdirs))\n"
                           "from course_lib.data import austen\nprint(len(austen.load_char_data()[1]))"],
                          env=dict(os.environ, PYTHONPATH=os.pathsep.join([zips, str(ROOT)]), COURSE_DATA=str(assets),
                                   HF_HUB_OFFLINE="1", PIP_NO_INDEX="1"), capture_output=True, text=True, timeout=120)
    assert read.returncode == 0 and int(read.stdout) > 10**6, read.stderr

    env = dict(os.environ, COURSE_PROFILE="smallest")
    env.pop("NBGRADER_EXECUTION", None)
    done = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--assets", str(assets), "--out", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["logs.tar.gz", "results.json", "results.md"]  # at most 8 come back
    assert not (assets / "packages").exists()  # nothing was downloaded: every package file lands there first
    results = json.loads((out / "results.json").read_text())
    status = {i["name"]: i["status"] for i in results["items"]}
    notebooks = {p.name for p in (ROOT / "solutions").iterdir() if p.name[:2].isdigit() and int(p.name[:2]) >= 6}
    assert notebooks <= status.keys() and {"bench_attention_cost", "bench_multihead"} <= status.keys()
    assert "bench_grading" not in status
    with tarfile.open(out / "logs.tar.gz") as tar:
        names = set(tar.getnames())
        log = lambda name: tar.extractfile(f"logs/{name}.log").read().decode()  # noqa: E731
        for name in gpu_check.QUICK_ON_CPU:
            assert status[name] == "ok", log(name)[-3000:]
        assert "staged/minilm" in log("bench_bert_throughput")  # fine-tuned on the staged bf16 copy
    assert all(s in ("ok", "compiled (not run)") for s in status.values()), status
    assert {f"scripts/{name}.py" for name in notebooks} <= names
    assert any(n.startswith("figures/09_efficient_attention_") for n in names)
    summary = (out / "results.md").read_text()
    assert all(f"## {name} " in summary for name in status)
    assert "flash (cpu)" in summary or "flash" in summary   # the attention benchmark's table made it in
    assert "on no GPU" in summary.splitlines()[0] and "not carried: smollm2" in summary
    assert sum(i["seconds"] for i in results["items"]) <= results["budget"]
    print(f"CPU-sized gpu check: {sum(i['seconds'] for i in results['items']):.0f} s of item time")
