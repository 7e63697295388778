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
    "finetuning": {"core", "planning", "data", "train", "configs"},
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


def test_finetuning_and_evaluation_do_not_import_each_other():
  """Both build on the training layer (model loading, the run directory), not on each other."""
  problems = []
  for layer, other in (("finetuning", "evaluation"), ("evaluation", "finetuning")):
    for path, tree in _modules(f"reproduce/{layer}"):
      problems += [f"{path.relative_to(ROOT)} imports {name}" for name in _imported(tree)
                   if name.startswith(f"reproduce.{other}")]
  assert not problems, "\n".join(problems)


def _module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(ROOT).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph() -> dict[str, set[str]]:
  """Module -> the modules of reproduce/ it imports anywhere (functions included); ``from P
  import M`` counts as an import of the module P.M when there is one, else of P."""
  modules = {_module_name(path): tree for path, tree in _modules("reproduce")}
  graph = {}
  for name, tree in modules.items():
    targets = set()
    for node in ast.walk(tree):
      if isinstance(node, ast.Import):
        targets.update(alias.name for alias in node.names)
      elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
        targets.update(f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules
                       else node.module for alias in node.names)
    graph[name] = {t for t in targets if t in modules and t != name}
  return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
  """The strongly connected components of more than one module (Tarjan)."""
  index, low, stack, on_stack, found = {}, {}, [], set(), []

  def visit(node):
    index[node] = low[node] = len(index)
    stack.append(node)
    on_stack.add(node)
    for target in sorted(graph[node]):
      if target not in index:
        visit(target)
        low[node] = min(low[node], low[target])
      elif target in on_stack:
        low[node] = min(low[node], index[target])
    if low[node] == index[node]:
      component = []
      while not component or component[-1] != node:
        component.append(stack.pop())
        on_stack.discard(component[-1])
      if len(component) > 1:
        found.append(sorted(component))

  for node in sorted(graph):
    if node not in index:
      visit(node)
  return found


def test_no_import_cycle_counting_imports_inside_functions():
  cycles = _cycles(_import_graph())
  assert not cycles, "\n".join(" <-> ".join(c) for c in cycles)


# Imports sit at the top of a module; the exceptions (the reasons: reproduce/core/cli.py's
# docstring). A main imports whatever it needs after its flags; elsewhere, module -> names.
LAZY_IMPORTS = {
    # import_tensorflow itself: the import with stderr captured.
    "reproduce/core/cli.py": {"tensorflow", "keras"},
    # planning/ and configs/ load no TensorFlow: the mains use them before their flags pass.
    "reproduce/planning/cost.py": {"model_defs"},
    "reproduce/configs/pretrain_imagenet.py": {"model_defs"},
    # A study worker imports worker_pool before init_worker starts TensorFlow quietly.
    "reproduce/miniature/worker_pool.py": {"keras", "reproduce.miniature.model_runs"},
    # Optional dependencies, needed by one kind of input only.
    "reproduce/data/record_index.py": {"array_record.python.array_record_module"},
    "model_defs/converters/common.py": {"torch"},
    # sklearn costs ~0.7 s on every import of reproduce.data for a builder run once.
    "reproduce/data/digits.py": {"sklearn.datasets.load_digits"},
}


def _function_level_imports(tree: ast.AST) -> list[tuple[int, str]]:
  """(line, imported name) of every import inside a function or class body."""
  found = []
  for scope in ast.walk(tree):
    if not isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
      continue
    for node in ast.walk(scope):
      if isinstance(node, ast.Import):
        found += [(node.lineno, alias.name) for alias in node.names]
      elif isinstance(node, ast.ImportFrom):
        found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
  return sorted(set(found))


def test_imports_inside_functions_only_where_a_lazy_import_is_needed():
  problems = []
  for package in PACKAGES:
    for path, tree in _modules(package):
      if path.parent == ROOT / "reproduce" and path.stem in MAINS:
        continue
      relative = str(path.relative_to(ROOT))
      allowed = LAZY_IMPORTS.get(relative, set())
      problems += [f"{relative}:{line} imports {name} inside a function"
                   for line, name in _function_level_imports(tree) if name not in allowed]
  assert not problems, "\n".join(problems)


# results.json has one writer: reproduce/train/rundir.py (RunDirectory).
RESULTS_WRITER = "reproduce/train/rundir.py"
_JSON_WRITES = {"write_json", "write_text"}


def _names_of_results_schema(tree: ast.AST) -> set[str]:
  """The names a module binds to ``reproduce.core.results``."""
  names = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom) and node.module == "reproduce.core":
      names.update(a.asname or a.name for a in node.names if a.name == "results")
  return names


def _mentions_results_file(tree: ast.AST) -> bool:
  schema_names = _names_of_results_schema(tree)
  for node in ast.walk(tree):
    if isinstance(node, ast.Constant) and node.value == "results.json":
      return True
    if (isinstance(node, ast.ImportFrom) and node.module == "reproduce.core.results"
        and any(a.name == "FILE" for a in node.names)):
      return True
    if (isinstance(node, ast.Attribute) and node.attr == "FILE"
        and isinstance(node.value, ast.Name) and node.value.id in schema_names):
      return True
  return False


def test_only_the_run_directory_writes_results_json():
  """A module that names the results file (schema FILE or "results.json") and writes JSON or
  text anywhere counts as a writer of results.json (the path may be built in one function
  and written in another)."""
  writers = []
  for path, tree in _modules("reproduce"):
    writes = any(isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
                 and n.func.attr in _JSON_WRITES for n in ast.walk(tree))
    if writes and _mentions_results_file(tree):
      writers.append(str(path.relative_to(ROOT)))
  assert writers == [RESULTS_WRITER], f"only RunDirectory writes results.json: {writers}"


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


def test_the_architecture_doc_names_every_module():
  """docs/architecture.md is drawn from the code: each module of the packages is named there
  (a new or renamed module updates the map a newcomer reads first)."""
  doc = (ROOT / "docs" / "architecture.md").read_text()
  missing = [str(path.relative_to(ROOT)) for package in PACKAGES
             for path in sorted((ROOT / package).rglob("*.py"))
             if path.name != "__init__.py" and f"`{path.name}`" not in doc
             and f"{path.parent.name}/{path.name}" not in doc]
  assert not missing, f"not in docs/architecture.md: {missing}"
