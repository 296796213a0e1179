"""GPU verification: run the benchmarks and the notebooks' GPU paths, and record what they print.

Each benchmark under benchmarks/ (bench_*.py, except the grading one) and each solution
notebook from 06 on, converted to a plain Python script (the GPU machine has no Jupyter), runs
in its own process with the repository on PYTHONPATH. Written under --out:
- results.md: the machine, then per item its status, wall time and the lines that carry results
  (a benchmark's whole table; a notebook's lines about loss, BLEU, accuracy, time, memory...);
- results.json: the same, for programs; logs/NAME.log: everything each item printed;
- scripts/NAME.py: the notebook scripts that ran; figures/NAME_NN.png: their plots.
The files are rewritten after every item, so a run cut short keeps what it finished.

The profile follows the machine: "full" with a CUDA GPU, where everything runs (one item at
most --timeout seconds, 570 by default so that one item fits a 10-minute machine call; run
the items in several calls with --only, results of earlier calls in the same --out are kept).
Without a GPU it makes the CPU-sized run, profile "smallest", which CI runs to keep this
script working (about a minute): the quick items run (QUICK_ON_CPU), every other notebook is
converted and compiled and every other benchmark compiled, but not run; --all runs them too
(on 2 busy cores, a quarter of an hour). COURSE_PROFILE overrides the profile and is passed
on to every item.

    python benchmarks/gpu_check.py [--out test-artifacts/gpu_check] [--only NAME ...] [--all] [--timeout S] [--list]
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIRST_NOTEBOOK = 6            # notebooks from 06_training on have GPU paths
NOT_GPU = {"bench_grading"}   # grading speed is a CPU matter (and needs nbgrader)
BENCH_ARGS = {  # extra arguments by profile; "smallest" keeps the CPU-sized run short
    "bench_multihead": {"smallest": ["--repeats", "3"]},
    "bench_gpt_train": {"full": ["--profile", "full"], "smallest": ["--seconds", "2"]},
}
QUICK_ON_CPU = {"bench_attention_cost", "09_efficient_attention"}
TIMEOUT = {"full": 570, "small": 600, "smallest": 180}  # seconds per item
# A notebook's lines worth a place in the summary: results, costs, the device.
RESULT_LINE = re.compile(r"(?i)(bleu|accura|loss|perplex|tokens?/s|examples?/s|mfu|flops|throughput|"
                         r"faster|speed|\bms\b|seconds|\d s\b|MiB|GiB|kernel|device|cuda|profile)")
PROGRESS_BAR = re.compile(r"\d+%\|")
MAX_LINES = 60

PRELUDE = '''\
# Written by benchmarks/gpu_check.py from a notebook: its code cells, in order, runnable by
# plain python. Figures are saved instead of shown; a cell's last expression is printed.
import os as _os

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
'''


@dataclass
class Item:
    name: str
    kind: str                 # "benchmark" or "notebook"
    argv: list[str]
    cwd: str
    status: str = "not run"   # ok, failed (exit N), timeout after N s, compiled (not run), not run
    seconds: float = 0.0
    ran_on: str = ""          # the machine and date of the run
    lines: list[str] = field(default_factory=list)


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


def find_items(profile: str, out: Path) -> list[Item]:
    items = []
    for script in sorted((ROOT / "benchmarks").glob("bench_*.py")):
        if script.stem not in NOT_GPU:
            extra = BENCH_ARGS.get(script.stem, {}).get(profile, [])
            items.append(Item(script.stem, "benchmark", [str(script), *extra], str(ROOT)))
    for folder in sorted((ROOT / "solutions").iterdir()):
        if folder.is_dir() and folder.name[:2].isdigit() and int(folder.name[:2]) >= FIRST_NOTEBOOK:
            notebook = folder / f"{folder.name}.ipynb"
            if notebook.exists():
                items.append(Item(folder.name, "notebook", [str(out / "scripts" / f"{folder.name}.py")], str(folder)))
    return items


def result_lines(item: Item, output: str) -> list[str]:
    # progress bars (tqdm) rewrite their line with \r: keep what each line ended as, drop the bars
    lines = [line.split("\r")[-1].rstrip() for line in output.splitlines()]
    lines = [line for line in lines if line.strip() and not PROGRESS_BAR.search(line)]
    if item.status != "ok":
        return lines[-MAX_LINES // 2:]  # the end of a failure says what went wrong
    if item.kind == "notebook":
        lines = [line for line in lines if RESULT_LINE.search(line)]
    return lines[:MAX_LINES] + ([f"... ({len(lines) - MAX_LINES} more lines in the log)"]
                                if len(lines) > MAX_LINES else [])


def prepare(item: Item, out: Path) -> None:
    """Write a notebook's script; compile the item's script (a SyntaxError fails the item)."""
    if item.kind == "notebook":
        (out / "scripts" / f"{item.name}.py").write_text(
            notebook_to_script(Path(item.cwd) / f"{item.name}.ipynb"))
    script = Path(item.argv[0])
    try:
        compile(script.read_text(), str(script), "exec")
        item.status = "compiled (not run)"
    except SyntaxError as error:
        item.status, item.lines = "failed (syntax)", [f"{error.filename}:{error.lineno}: {error.msg}"]


def run(item: Item, env: dict, out: Path, timeout: float, ran_on: str) -> None:
    env = dict(env, GPU_CHECK_FIGURES=str(out / "figures" / item.name))
    item.ran_on = ran_on
    start = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, *item.argv], cwd=item.cwd, env=env, timeout=timeout,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
        output = done.stdout
        item.status = "ok" if done.returncode == 0 else f"failed (exit {done.returncode})"
    except subprocess.TimeoutExpired as expired:
        output = (expired.stdout or b"").decode(errors="replace") if isinstance(expired.stdout, bytes) \
            else (expired.stdout or "")
        item.status = f"timeout after {timeout:.0f} s"
    item.seconds = time.perf_counter() - start
    (out / "logs" / f"{item.name}.log").write_text(output)
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
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    return {"gpu": gpu, "cpus": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version(),
            "platform": platform.platform(), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "load average": round(os.getloadavg()[0], 1) if hasattr(os, "getloadavg") else None}


def write_results(out: Path, profile: str, info: dict, items: list[Item]) -> None:
    (out / "results.json").write_text(json.dumps(
        {"profile": profile, "machine": info, "items": [asdict(i) for i in items]}, indent=1))
    md = [f"# GPU check ({profile} profile)", "",
          f"- machine: {info['gpu'] or 'no GPU'}, {info['cpus']} CPUs, load average {info['load average']}",
          f"- torch {info['torch']}, Python {info['python']}, {info['platform']}", f"- {info['date']}", "",
          "| item | status | wall s | ran on |", "|---|---|---|---|"]
    md += [f"| {i.name} | {i.status} | {i.seconds:.1f} | {i.ran_on} |" for i in items]
    for item in items:
        md += ["", f"## {item.name} ({item.kind}): {item.status}, {item.seconds:.1f} s", "", "```",
               *item.lines, "```"]
    (out / "results.md").write_text("\n".join(md) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "test-artifacts" / "gpu_check")
    parser.add_argument("--only", nargs="*", help="names of the items to run (see --list)")
    parser.add_argument("--all", action="store_true", help="without a GPU, run every item, not only the quick ones")
    parser.add_argument("--timeout", type=float, help="seconds per item (default: by profile)")
    parser.add_argument("--list", action="store_true", help="list the items and exit")
    args = parser.parse_args()

    import torch
    profile = os.environ.get("COURSE_PROFILE") or ("full" if torch.cuda.is_available() else "smallest")
    out = args.out.resolve()
    items = find_items(profile, out)
    if args.list:
        print("\n".join(f"{i.name} ({i.kind})" for i in items))
        return 0
    if args.only:
        unknown = set(args.only) - {i.name for i in items}
        if unknown:
            parser.error(f"unknown items {sorted(unknown)}; --list shows them")
        items = [i for i in items if i.name in args.only]
    for folder in ("logs", "scripts", "figures"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, COURSE_PROFILE=profile, MPLBACKEND="Agg", PYTHONUNBUFFERED="1", TQDM_DISABLE="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    env.pop("NBGRADER_EXECUTION", None)  # the profile alone decides the sizes
    info = machine()
    everything = profile == "full" or args.all or args.only
    print(f"GPU check, profile {profile}: {len(items)} items, results in {out}", flush=True)
    kept = [i for i in previous_items(out, profile) if i.name not in {j.name for j in items}]
    for item in items:
        prepare(item, out)
        if item.status.startswith("compiled") and (everything or item.name in QUICK_ON_CPU):
            run(item, env, out, args.timeout or TIMEOUT[profile], f"{info['gpu'] or 'CPU'}, {info['date']}")
        print(f"{item.name:>28}: {item.status}, {item.seconds:.1f} s", flush=True)
        write_results(out, profile, info, kept + items)
    return 0 if all(i.status in ("ok", "compiled (not run)") for i in items) else 1


if __name__ == "__main__":
    sys.exit(main())
