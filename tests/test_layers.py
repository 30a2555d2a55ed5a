"""The package's layers import one way (DESIGN §16), keyed on package prefixes, no module lists.

    domain  <-  app  <-  {aws, store, chat}  <-  ops  <-  emr.py

and the outside world enters at one place each: boto3/botocore in ``aws``, slack_sdk and the
SlackV3 backend in ``chat.slack``, errbot in ``chat.slack`` and ``emr.py``, matplotlib in the chart.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PLUGIN = Path(__file__).resolve().parent.parent / "plugins" / "emr"
PACKAGE = PLUGIN / "emrchatops"
RANK = {"domain": 0, "app": 1, "aws": 2, "store": 2, "chat": 2, "ops": 3}
#: Third-party (not standard library, not our package) imports allowed per layer prefix.
OUTSIDE = {
    "emrchatops.aws": {"boto3", "botocore"},
    "emrchatops.chat.slack": {"slack_sdk", "errbot"},
    "emrchatops.chat.chart": {"matplotlib"},
}
#: Imports that break the direction today, to be gone when the service is given its ports.
KNOWN: set[tuple[str, str]] = set()


def modules() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PLUGIN).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found.append(".".join(parts))
    return found


def source_of(module: str) -> Path:
    path = PLUGIN.joinpath(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def imports_of(module: str) -> set[str]:
    tree = ast.parse(source_of(module).read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            raise AssertionError(f"{module}: relative import; write the package path")
    return found


def layer(module: str) -> str:
    return module.split(".")[1] if module.count(".") >= 1 else ""


def test_the_package_has_every_layer() -> None:
    assert {layer(m) for m in modules() if m != "emrchatops"} == set(RANK)


@pytest.mark.parametrize("module", [m for m in modules() if m != "emrchatops"])
def test_a_layer_imports_only_layers_below_it(module: str) -> None:
    here = layer(module)
    for name in imports_of(module):
        if not name.startswith("emrchatops.") or (module, ".".join(name.split(".")[:2])) in KNOWN:
            continue
        there = layer(name)
        if there not in RANK:
            continue  # "from emrchatops.domain import state" names the layer's package
        assert RANK[there] < RANK[here] or there == here, f"{module} imports {name}"
        if there == "chat" and name.startswith("emrchatops.chat.slack"):
            assert module.startswith("emrchatops.chat.slack"), f"{module} imports {name}: only chat/slack knows Slack"


@pytest.mark.parametrize("module", modules())
def test_the_outside_world_enters_at_one_place_each(module: str) -> None:
    allowed = set().union(*(libs for prefix, libs in OUTSIDE.items() if module.startswith(prefix)))
    for name in imports_of(module):
        top = name.split(".")[0]
        if top in sys.stdlib_module_names or top in {"emrchatops", "__future__"}:
            continue
        assert top in allowed, f"{module} imports {name}"


@pytest.mark.parametrize("module", [m for m in modules() if layer(m) == "domain"])
def test_the_domain_does_not_read_the_clock(module: str) -> None:
    source = source_of(module).read_text()
    assert ".now(" not in source and "utcnow" not in source and "time.time" not in source, module


def test_nothing_in_the_package_imports_the_plugin() -> None:
    for module in modules():
        assert "emr" not in {name.split(".")[0] for name in imports_of(module)}, module


def test_the_plugin_folder_holds_only_the_glue() -> None:
    assert sorted(p.name for p in PLUGIN.glob("*.py")) == ["emr.py"]


@pytest.mark.parametrize(
    "spelling",
    [
        'r"j-[A-Z0-9]',  # a cluster id
        '"STARTING", "BOOTSTRAPPING"',  # the states of a cluster
        "[a-z]{2}(?:-[a-z]+)+-\\d",  # a region
        "def _iso(",  # the stored form of a moment
        "def _dt(",
        "timedelta(minutes=5)  # EMR publishes IsIdle",
    ],
)
def test_the_vocabulary_is_written_once(spelling: str) -> None:
    where = [m for m in modules() if spelling in source_of(m).read_text()]
    assert where in ([], ["emrchatops.domain.vocabulary"]), f"{spelling!r} spelled again in {where}"
