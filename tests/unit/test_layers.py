"""The direction rule, read from the code's own imports: every import points down the layers.

    contract (schemas) ← shared I/O ← core and log ← client ← services and agents
        ← evaluation, performance and testing ← app

The client (posting a task, waiting for its answer) sits below the services, so the front door
uses it as it is instead of mirroring its types.

The marketplace's services never import agents and agents never import services: an agent is
an independent process that shares only the contract and the shared I/O with the marketplace.
The pure core imports nothing with I/O (no shared I/O but the configuration's values, no log).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("schemas", "marketplace", "agents")

# Each layer's floor, the packages it consists of, and what it may import besides lower floors.
FLOORS: dict[str, int] = {
    "schemas": 0,
    "marketplace.shared": 1,
    "marketplace.core": 2,
    "marketplace.log": 2,
    "marketplace.client": 3,
    "marketplace.services": 4,
    "agents": 4,
    "marketplace.evaluation": 5,
    "marketplace.performance": 5,
    "marketplace.testing": 5,
    "marketplace.app": 6,
}
# Same-floor neighbours that must not import each other (core ↔ log one way only).
FORBIDDEN = {
    ("marketplace.core", "marketplace.log"),
    ("marketplace.services", "agents"),
    ("agents", "marketplace.services"),
}
# The pure core takes values and returns values: of the shared I/O only configuration values.
CORE_MAY_USE = {"marketplace.shared.config"}


def layer(module: str) -> str | None:
    return max(
        (p for p in FLOORS if module == p or module.startswith(p + ".")), key=len, default=None
    )


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def imports(path: Path) -> set[str]:
    """Every project module the file imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    known = modules()
    return {m for m in found if m in known and m.split(".")[0] in PACKAGES}


def violations(module: str, imported: str) -> list[str]:
    here, there = layer(module), layer(imported)
    if here is None or there is None or here == there:
        return []
    if (here, there) in FORBIDDEN:
        return [f"{module} → {imported}: {here} never imports {there}"]
    if FLOORS[there] > FLOORS[here]:
        return [f"{module} → {imported}: {here} is below {there}"]
    if (
        here == "marketplace.core"
        and there == "marketplace.shared"
        and imported not in CORE_MAY_USE
    ):
        return [f"{module} → {imported}: the core is pure"]
    if here == "agents" and there not in ("schemas", "marketplace.shared"):
        return [f"{module} → {imported}: agents share only the contract and the shared I/O"]
    return []


def test_every_module_has_a_layer() -> None:
    assert [m for m in modules() if layer(m) is None and m not in PACKAGES] == []


@pytest.mark.parametrize("module", sorted(modules()))
def test_imports_point_down_the_layers(module: str) -> None:
    found = [
        v for imported in sorted(imports(modules()[module])) for v in violations(module, imported)
    ]
    assert found == []
