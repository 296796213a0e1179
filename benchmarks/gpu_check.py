"""GPU verification: run the benchmarks and the notebooks' GPU paths in a time budget, and record what they print.

Each benchmark under benchmarks/ (bench_*.py, except the grading one) and each solution
notebook from 06 on, converted here to a plain Python script (the GPU machine has no Jupyter),
runs in its own process with the repository on PYTHONPATH, one after the other, within a
**total budget** (--budget, 300 s by default on a GPU, so that a second try fits in the
machine's time). Each item gets a share of what is left (WEIGHT), passes it on (a benchmark as
its arguments, BENCH_ARGS; a notebook's training calls stop at half the item's time left, so
that its evaluation still fits) and is killed at its end. What an item prints is echoed as it
comes and the results are rewritten after every item, so a run cut short keeps its figures.

Under --out it writes three files (the GPU machine returns at most 8): results.md (the device,
then per item its status, wall time and the lines that carry results), results.json (the same,
for programs) and logs.tar.gz (each item's whole output, the notebook scripts, their figures).

--assets FOLDER runs on what benchmarks/stage_gpu_assets.py staged there, as on the GPU
machine, which reaches no registry: COURSE_DATA points there, HF_HUB_OFFLINE=1, pip has no
index, and the staged pure-Python packages go on PYTHONPATH where this Python lacks them. A
notebook that reaches an asset that could not travel stops there, saying why ("stopped").

The profile follows the machine: "full" with a CUDA GPU, where everything runs. Without one it
makes the CPU-sized run, profile "smallest", which CI runs to keep this script working (about a
minute): the quick items run (QUICK_ON_CPU), every other notebook is converted and compiled and
every other benchmark compiled, but not run; --all runs them too. COURSE_PROFILE overrides the
profile and is passed on to every item. --only runs some items; the others' results of an
earlier run into the same --out are kept.

    python benchmarks/gpu_check.py [--assets .gpu_assets] [--out DIR] [--budget S] [--only NAME ...] [--all] [--list]
"""
from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIRST_NOTEBOOK = 6            # notebooks from 06_training on have GPU paths
NOT_GPU = {"bench_grading"}   # grading speed is a CPU matter (and needs nbgrader)
SKIP = {  # by profile: items left out, and why
    "full": {"bench_dates": "its goal is for 2 CPU cores; notebook 06 trains the same model on the GPU"},
}
# Extra arguments by profile, from the item's seconds; "smallest" keeps the CPU-sized run short.
BENCH_ARGS: dict[str, dict[str, Callable[[float], list[str]]]] = {
    "bench_multihead": {"full": lambda s: ["--dtype", "bfloat16"], "smallest": lambda s: ["--repeats", "3"]},
    # the training gets 3/4 of the item: start-up, warm-up steps and the final evaluation the rest
    "bench_gpt_train": {"full": lambda s: ["--profile", "full", "--seconds", f"{0.75 * s:.0f}"],
                        "smallest": lambda s: ["--seconds", "2"]},
    # one run of the notebook's full settings in 3/4 of the item (the rest: data, BPE, decoding)
    "bench_translation": {"full": lambda s: ["--profile", "full", "--minutes", f"{0.75 * s / 60:.2f}"]},
    # one seed of the notebook's full settings, stopped by its clock at 3/5 of the item (the rest: loading, evaluations)
    "bench_bert_finetune": {"full": lambda s: ["--profile", "full", "--seeds", "0",
                                               "--set", f"minutes={0.6 * s / 60:.2f}"]},
    # throughput needs no pretrained weights: BERT-base's shape, randomly initialised
    "bench_bert_throughput": {"full": lambda s: ["--model", "bert-base-random"]},
}
WEIGHT = {"bench_gpt_train": 4, "06_training": 3, "07_bert": 2, "08_gpt": 2, "bench_attention_cost": 1.5,
          "bench_multihead": 0.5}  # an item's share of the budget left, against the others' (1 by default)
BUDGET = {"full": 300, "small": 1200, "smallest": 300}  # seconds for the whole run
MIN_SECONDS = 10              # below this an item is not started: the budget is spent
QUICK_ON_CPU = {"bench_attention_cost", "bench_bert_throughput", "09_efficient_attention"}
NOT_CARRIED_EXIT = 3          # a notebook script's exit status when it reached an asset that did not travel
ARCHIVE = "logs.tar.gz"
# A notebook's lines worth a place in the summary: results, costs, the device.
RESULT_LINE = re.compile(r"(?i)(bleu|accura|loss|perplex|tokens?/s|examples?/s|mfu|flops|throughput|"
                         r"faster|speed|\bms\b|seconds|\d s\b|MiB|GiB|kernel|device|cuda|profile|gpu_check)")
PROGRESS_BAR = re.compile(r"\d+%\|")
MAX_LINES = 60

PRELUDE = '''\
# Written by benchmarks/gpu_check.py from a notebook: its code cells, in order, runnable by
# plain python. Figures are saved instead of shown; a cell's last expression is printed.
import os as _os
import sys as _sys
import time as _time
import traceback as _traceback

import matplotlib as _mpl
_mpl.use("Agg")
import matplotlib.pyplot as _plt

_figure_stem, _figures_saved = _os.environ.get("GPU_CHECK_FIGURES"), 0


def _save_figures(*args, **kwargs):
    global _figures_saved
    for number in _plt.get_fignums():
        _figures_saved += 1
        if _figure_stem:
            _plt.figure(number).savefig(f"{_figure_stem}_{_figures_saved:02d}.png", dpi=80)
    _plt.close("all")


_plt.show = _save_figures
try:
    from IPython.display import display
except ImportError:
    display = print


def _show(value):
    if value is not None:
        print(repr(value))


def _stop_at_asset_not_carried(kind, error, tb):
    """An asset that could not travel to this machine ends the script there, saying where and why."""
    if kind.__name__ != "AssetNotCarried":
        return _sys.__excepthook__(kind, error, tb)
    line = [f.lineno for f in _traceback.extract_tb(tb) if f.filename == __file__][-1]
    cells = [s for s in open(__file__, encoding="utf-8").read().splitlines()[:line] if s.startswith("# --- cell ")]
    print(f"gpu_check: stopped at {cells[-1][6:-4] if cells else 'the start'}: {error}", flush=True)
    _os._exit(NOT_CARRIED_EXIT)


_sys.excepthook = _stop_at_asset_not_carried
_deadline = float(_os.environ.get("GPU_CHECK_DEADLINE") or 0)
if _deadline:
    import course_lib.training as _training

    _fit = _training.fit

    def _fit_in_budget(*args, max_seconds=None, on_eval=None, **kwargs):
        """course_lib's fit, its training time capped at half of what the item has left: what follows
        (evaluation, decoding) must fit too. Validation losses are printed as they come."""
        cap = max(1.0, 0.5 * (_deadline - _time.time()))
        if max_seconds is None or max_seconds > cap:
            print(f"gpu_check: training capped at {cap:.0f} s (asked: {max_seconds})", flush=True)
            max_seconds = cap
        started = _time.perf_counter()

        def report(step, val_loss):
            print(f"gpu_check: step {step}, validation loss {val_loss:.4f}, "
                  f"{_time.perf_counter() - started:.0f} s", flush=True)
            if on_eval is not None:
                on_eval(step, val_loss)

        # no progress bar: in a log its redrawn lines would swallow the figures
        return _fit(*args, max_seconds=max_seconds, on_eval=report, **{**kwargs, "progress": False})

    _training.fit = _fit_in_budget
'''.replace("NOT_CARRIED_EXIT", str(NOT_CARRIED_EXIT))


@dataclass
class Item:
    name: str
    kind: str                 # "benchmark" or "notebook"
    argv: list[str]
    cwd: str
    status: str = "not run"   # ok, stopped at cell N, failed (exit N), timeout after N s, skipped (why),
    seconds: float = 0.0      # compiled (not run), not run
    budget: float = 0.0       # the seconds it was given
    ran_on: str = ""          # the machine and date of the run
    lines: list[str] = field(default_factory=list)


FINE = ("ok", "stopped at", "compiled (not run)", "skipped")  # statuses that are not failures


def _display_last_expression(code: str) -> str:
    """The cell's code with its last expression, if any, wrapped in _show(...), as Jupyter displays it."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return code  # left as it is: the script then fails where the notebook would
    if not tree.body or not isinstance(tree.body[-1], ast.Expr) or code.rstrip().endswith(";"):
        return code
    node = tree.body[-1]
    lines = code.splitlines()
    first, last = node.lineno - 1, node.end_lineno - 1
    head = lines[first].encode()[:node.col_offset].decode()   # ast offsets count UTF-8 bytes
    tail = lines[last].encode()[node.end_col_offset:].decode()
    lines[first:last + 1] = f"{head}_show({ast.get_source_segment(code, node)}){tail}".splitlines()
    return "\n".join(lines)


def notebook_to_script(notebook: Path) -> str:
    """The notebook's code cells as one script, as ``jupyter nbconvert --to script`` writes it, but
    runnable by plain python: IPython magics and shell escapes become comments (a %% cell magic
    comments out its whole cell), and each cell's last expression is printed."""
    parts = [PRELUDE]
    for index, cell in enumerate(json.loads(notebook.read_text())["cells"]):
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"])
        if source.lstrip().startswith("%%"):
            code = "\n".join("# " + line for line in source.splitlines())
        else:
            code = "\n".join("# " + line if line.lstrip().startswith(("%", "!")) else line
                             for line in source.splitlines())
        parts.append(f"# --- cell {index} ---\n{_display_last_expression(code)}\n")
    return "\n\n".join(parts)


def find_items(profile: str, work: Path) -> list[Item]:
    items = []
    for script in sorted((ROOT / "benchmarks").glob("bench_*.py")):
        if script.stem not in NOT_GPU:
            items.append(Item(script.stem, "benchmark", [str(script)], str(ROOT)))
    for folder in sorted((ROOT / "solutions").iterdir()):
        if folder.is_dir() and folder.name[:2].isdigit() and int(folder.name[:2]) >= FIRST_NOTEBOOK:
            notebook = folder / f"{folder.name}.ipynb"
            if notebook.exists():
                items.append(Item(folder.name, "notebook", [str(work / "scripts" / f"{folder.name}.py")], str(folder)))
    return items


def result_lines(item: Item, output: str) -> list[str]:
    """The lines of ``output`` that go into results.md: a benchmark's figures, a notebook's result
    lines, the end of a failure."""
    # progress bars (tqdm) rewrite their line with \r: keep what each line ended as, drop the bars
    lines = [line.split("\r")[-1].rstrip() for line in output.splitlines()]
    lines = [line for line in lines if line.strip() and not PROGRESS_BAR.search(line)]
    if item.status.startswith("failed"):
        return lines[-MAX_LINES // 2:]  # the end of a failure says what went wrong
    if item.kind == "notebook":
        lines = [line for line in lines if RESULT_LINE.search(line)]
    return lines[:MAX_LINES] + ([f"... ({len(lines) - MAX_LINES} more lines in the log)"]
                                if len(lines) > MAX_LINES else [])


def prepare(item: Item, work: Path) -> None:
    """Write a notebook's script; compile the item's script (a SyntaxError fails the item)."""
    if item.kind == "notebook":
        (work / "scripts" / f"{item.name}.py").write_text(
            notebook_to_script(Path(item.cwd) / f"{item.name}.ipynb"))
    script = Path(item.argv[0])
    try:
        compile(script.read_text(), str(script), "exec")
        item.status = "compiled (not run)"
    except SyntaxError as error:
        item.status, item.lines = "failed (syntax)", [f"{error.filename}:{error.lineno}: {error.msg}"]


def run(item: Item, argv: list[str], env: dict, work: Path, seconds: float, ran_on: str) -> None:
    """Run the item for at most ``seconds``, its output going to its log and, line by line, its
    result lines to this process's output; killed (with its children) at the end of its time."""
    env = dict(env, GPU_CHECK_FIGURES=str(work / "figures" / item.name),
               GPU_CHECK_DEADLINE=str(time.time() + seconds))
    item.ran_on, item.budget = ran_on, round(seconds)
    log_path = work / "logs" / f"{item.name}.log"
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, *argv], cwd=item.cwd, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, start_new_session=True)

    def copy_output() -> None:
        with log_path.open("wb") as log:
            for raw in process.stdout:
                log.write(raw)
                log.flush()
                line = raw.decode(errors="replace").split("\r")[-1].rstrip()
                if line.strip() and not PROGRESS_BAR.search(line) and (
                        item.kind == "benchmark" or RESULT_LINE.search(line)):
                    print(f"  {item.name} | {line}", flush=True)

    reader = threading.Thread(target=copy_output)
    reader.start()
    try:
        code = process.wait(timeout=seconds)
        item.status = {0: "ok"}.get(code, f"failed (exit {code})")
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # its whole group: data loader workers hold the pipe too
        process.wait()
        item.status = f"timeout after {seconds:.0f} s"
    reader.join()
    item.seconds = time.perf_counter() - start
    output = log_path.read_text(errors="replace")
    if item.status == f"failed (exit {NOT_CARRIED_EXIT})" and "gpu_check: stopped at " in output:
        where = output.split("gpu_check: stopped at ")[-1].split(":")[0]
        item.status = f"stopped at {where} (an asset that did not travel)"
    item.lines = result_lines(item, output)


def previous_items(out: Path, profile: str) -> list[Item]:
    """The items of an earlier run into the same folder with the same profile (kept by --only runs)."""
    try:
        earlier = json.loads((out / "results.json").read_text())
    except (OSError, ValueError):
        return []
    return [Item(**i) for i in earlier["items"]] if earlier.get("profile") == profile else []


def machine() -> dict:
    import torch
    import transformers
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    memory = f"{torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB" if gpu else None
    return {"gpu": gpu, "gpu memory": memory, "cuda": torch.version.cuda if gpu else None, "cpus": os.cpu_count(),
            "torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version(), "platform": platform.platform(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "load average": round(os.getloadavg()[0], 1) if hasattr(os, "getloadavg") else None}


def write_results(out: Path, work: Path, profile: str, info: dict, items: list[Item], budget: float,
                  assets: dict | None) -> None:
    """results.json, results.md and the archive of the work folder (logs, scripts, figures) in ``out``."""
    (out / "results.json").write_text(json.dumps(
        {"profile": profile, "machine": info, "budget": budget, "assets": assets,
         "items": [asdict(i) for i in items]}, indent=1))
    device = f"{info['gpu']} ({info['gpu memory']}, CUDA {info['cuda']})" if info["gpu"] else "no GPU"
    md = [f"# GPU check ({profile} profile) on {device}", "",
          f"- device: {device}; {info['cpus']} CPUs, load average {info['load average']}",
          f"- torch {info['torch']}, transformers {info['transformers']}, Python {info['python']}, {info['platform']}",
          f"- {info['date']}; total budget {budget:.0f} s, items' wall time {sum(i.seconds for i in items):.0f} s"]
    if assets is not None:
        md.append(f"- staged assets: {', '.join(assets['staged bytes'])}; "
                  + "; ".join(f"not carried: {name} ({why})" for name, why in assets["not carried"].items()))
    md += ["", "| item | status | wall s | budget s | ran on |", "|---|---|---|---|---|"]
    md += [f"| {i.name} | {i.status} | {i.seconds:.1f} | {i.budget:.0f} | {i.ran_on} |" for i in items]
    for item in items:
        md += ["", f"## {item.name} ({item.kind}): {item.status}, {item.seconds:.1f} s", "", "```",
               *item.lines, "```"]
    (out / "results.md").write_text("\n".join(md) + "\n")
    with tarfile.open(out / f".{ARCHIVE}", "w:gz") as tar:
        for folder in ("logs", "scripts", "figures"):
            tar.add(work / folder, arcname=folder)
    (out / f".{ARCHIVE}").replace(out / ARCHIVE)  # a run killed mid-write leaves the previous archive


def offline_env(env: dict, assets: Path) -> dict:
    """``env`` for a run on the staged assets alone: no hub, no package index, the staged
    pure-Python packages on PYTHONPATH where this Python lacks them."""
    zips = [str(z) for z in sorted((assets / "python").glob("*.zip")) if importlib.util.find_spec(z.stem) is None]
    return dict(env, COURSE_DATA=str(assets), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PIP_NO_INDEX="1",
                npm_config_offline="true", PYTHONPATH=os.pathsep.join([env["PYTHONPATH"], *zips]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "test-artifacts" / "gpu_check")
    parser.add_argument("--assets", type=Path, help="the folder benchmarks/stage_gpu_assets.py staged: run on it alone")
    parser.add_argument("--budget", type=float, help="seconds for the whole run (default: by profile)")
    parser.add_argument("--only", nargs="*", help="names of the items to run (see --list)")
    parser.add_argument("--all", action="store_true", help="without a GPU, run every item, not only the quick ones")
    parser.add_argument("--list", action="store_true", help="list the items and exit")
    args = parser.parse_args()

    import torch
    profile = os.environ.get("COURSE_PROFILE") or ("full" if torch.cuda.is_available() else "smallest")
    out = args.out.resolve()
    work = Path(tempfile.mkdtemp(prefix="gpu_check-"))
    items = find_items(profile, work)
    if args.list:
        shutil.rmtree(work)
        print("\n".join(f"{i.name} ({i.kind})" for i in items))
        return 0
    if args.only:
        unknown = set(args.only) - {i.name for i in items}
        if unknown:
            parser.error(f"unknown items {sorted(unknown)}; --list shows them")
        items = [i for i in items if i.name in args.only]
    out.mkdir(parents=True, exist_ok=True)
    kept = [i for i in previous_items(out, profile) if i.name not in {j.name for j in items}]
    if kept and (out / ARCHIVE).exists():
        with tarfile.open(out / ARCHIVE) as tar:  # the kept items' logs go into the new archive too
            tar.extractall(work, filter="data")
    for folder in ("logs", "scripts", "figures"):
        (work / folder).mkdir(exist_ok=True)
    env = dict(os.environ, COURSE_PROFILE=profile, MPLBACKEND="Agg", PYTHONUNBUFFERED="1", TQDM_DISABLE="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    env.pop("NBGRADER_EXECUTION", None)  # the profile alone decides the sizes
    staged = None
    if args.assets:
        env = offline_env(env, args.assets.resolve())
        staged = json.loads((args.assets / "manifest.json").read_text())
    info = machine()
    budget = args.budget or BUDGET[profile]
    deadline = time.perf_counter() + budget
    everything = profile == "full" or args.all or args.only
    print(f"GPU check, profile {profile} on {info['gpu'] or 'CPU'}: {len(items)} items in {budget:.0f} s, "
          f"results in {out}", flush=True)
    for item in items:
        prepare(item, work)
    to_run = [i for i in items if i.status.startswith("compiled") and i.name not in SKIP.get(profile, {})
              and (everything or i.name in QUICK_ON_CPU)]
    for item in items:
        if item.name in SKIP.get(profile, {}):
            item.status = f"skipped ({SKIP[profile][item.name]})"
        if item in to_run:
            left = deadline - time.perf_counter()
            # a share of what is left, against the items still to come: time saved earlier is spent later
            seconds = left * WEIGHT.get(item.name, 1) / sum(WEIGHT.get(i.name, 1) for i in to_run[to_run.index(item):])
            if seconds < MIN_SECONDS:
                item.status = f"skipped (the total budget of {budget:.0f} s was spent)"
            else:
                extra = BENCH_ARGS.get(item.name, {}).get(profile, lambda s: [])(seconds)
                run(item, [*item.argv, *extra], env, work, seconds, f"{info['gpu'] or 'CPU'}, {info['date']}")
        print(f"{item.name:>28}: {item.status}, {item.seconds:.1f} s", flush=True)
        write_results(out, work, profile, info, kept + items, budget, staged)
    shutil.rmtree(work, ignore_errors=True)
    return 0 if all(i.status.startswith(FINE) for i in items) else 1


if __name__ == "__main__":
    sys.exit(main())
