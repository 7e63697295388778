"""The package's shape: layers import one way, sizes stay readable, dependencies are exact."""

from __future__ import annotations

import ast
import configparser
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("reproduce", "model_defs")
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 80

# What each layer of reproduce/ may import from the kit (besides itself and model_defs).
ALLOWED = {
    "core": set(),
    "planning": {"core"},
    "data": {"core"},
    "train": {"core", "planning", "data", "configs"},
    "analysis": {"core", "planning"},
    "configs": {"core", "configs"},
    "miniature": {"core", "planning", "data", "train", "analysis", "configs", "finetuning"},
    "evaluation": {"core", "data", "train", "analysis"},
    "finetuning": {"core", "planning", "data", "train", "evaluation", "configs"},
}
MAINS = {"plan", "pretrain", "fit_scaling", "compare", "study", "evaluate", "convert", "finetune"}


def _modules(package: str):
  for path in sorted((ROOT / package).rglob("*.py")):
    yield path, ast.parse(path.read_text(), filename=str(path))


def _imported(tree: ast.AST) -> set[str]:
  """Dotted names of every module imported anywhere in the file (also inside functions)."""
  names = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
      names.add(node.module)
      names.update(f"{node.module}.{alias.name}" for alias in node.names)
  return names


def _layer(path: pathlib.Path) -> str:
  parts = path.relative_to(ROOT / "reproduce").parts
  return parts[0] if len(parts) > 1 else path.stem


def test_layers_import_one_way():
  problems = []
  for path, tree in _modules("reproduce"):
    layer = _layer(path)
    for name in _imported(tree):
      parts = name.split(".")
      if parts[0] != "reproduce" or len(parts) < 2 or parts[1] == layer:
        continue
      target = parts[1]
      if target in MAINS:
        problems.append(f"{path.relative_to(ROOT)} imports the main {name}")
      elif layer in ALLOWED and target not in ALLOWED[layer]:
        problems.append(f"{path.relative_to(ROOT)} ({layer}) imports {name}")
  for path, tree in _modules("model_defs"):
    problems += [f"{path.relative_to(ROOT)} imports {n}" for n in _imported(tree)
                 if n.startswith("reproduce")]
  assert not problems, "\n".join(problems)


def test_modules_and_functions_stay_readable():
  problems = []
  for package in PACKAGES:
    for path, tree in _modules(package):
      lines = len(path.read_text().splitlines())
      if lines > MAX_MODULE_LINES:
        problems.append(f"{path.relative_to(ROOT)}: {lines} lines")
      for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
          length = node.end_lineno - node.lineno + 1
          if length > MAX_FUNCTION_LINES:
            problems.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {length} lines")
  assert not problems, "\n".join(problems)


# ----------------------------------------------------------------------------------------
# Dependencies.

TENSORFLOW_DISTRIBUTIONS = {"tensorflow", "tensorflow-cpu", "tensorflow-tpu"}
IMPORT_NAMES = {"absl-py": "absl", "ml-collections": "ml_collections",
                "scikit-learn": "sklearn", "tensorflow-datasets": "tensorflow_datasets"}
# Declared although the kit never imports it, each for a stated reason.
NOT_IMPORTED = {"importlib_resources": "tensorflow-datasets imports it without declaring it"}


def _setup_cfg() -> configparser.ConfigParser:
  config = configparser.ConfigParser()
  config.read(ROOT / "setup.cfg")
  return config


def _requirements(text: str) -> list[str]:
  return [line.strip() for line in text.splitlines() if line.strip()]


def _distribution(requirement: str) -> str:
  return re.match(r"[A-Za-z0-9_.\-]+", requirement).group(0).lower()


def test_each_tensorflow_extra_installs_exactly_one_build():
  config = _setup_cfg()
  base = {_distribution(r) for r in _requirements(config["options"]["install_requires"])}
  assert not base & TENSORFLOW_DISTRIBUTIONS
  assert "keras-cv" not in base
  extras = config["options.extras_require"]
  for extra in ("cpu", "gpu", "tpu"):
    for machine in ("x86_64", "aarch64"):
      chosen = [r for r in _requirements(extras[extra])
                if _distribution(r) in TENSORFLOW_DISTRIBUTIONS
                and (";" not in r or _marker_holds(r.split(";", 1)[1], machine))]
      assert len(chosen) == 1, (extra, machine, chosen)


def _marker_holds(marker: str, machine: str) -> bool:
  clauses = re.findall(r'platform_machine\s*(==|!=)\s*"([^"]+)"', marker)
  results = [(machine == value) == (op == "==") for op, value in clauses]
  return any(results) if " or " in marker else all(results)


def test_declared_dependencies_are_the_imported_ones():
  imported = set()
  for package in PACKAGES:
    for _, tree in _modules(package):
      imported |= {name.split(".")[0] for name in _imported(tree)}
  declared = _requirements(_setup_cfg()["options"]["install_requires"])
  for requirement in declared:
    dist = _distribution(requirement)
    if dist in NOT_IMPORTED:
      continue
    assert IMPORT_NAMES.get(dist, dist) in imported, f"{dist} is declared but never imported"


@pytest.mark.parametrize("command", ["pip install -e '.[cpu,test]' && python -m pytest"])
def test_ci_runs_the_readme_test_command(command):
  assert command in (ROOT / "README.md").read_text()
  assert command in (ROOT / ".ci" / "run").read_text()
