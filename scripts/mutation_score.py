"""Mutation score of the modules that decide results (issue #23), measured with mutmut 3.

Not run in CI: it takes hours on 2 cores. Each group below is one mutmut run in its own scratch
copy of the working tree (mutmut writes ``mutants/`` next to the code it copies), with only
that group's modules mutated and only its fast test files run against the mutants. mutmut
then runs, for each mutant, only those of the listed tests that call the mutated function.

  pip install mutmut hypothesis
  nice -n 19 python scripts/mutation_score.py                # every group
  nice -n 19 python scripts/mutation_score.py planning stats # some groups
  nice -n 19 python scripts/mutation_score.py --sample 10     # 10 mutants per module, seeded
  nice -n 19 python scripts/mutation_score.py analysis --modules=reproduce/analysis/pipeline.py
  nice -n 19 python scripts/mutation_score.py --rev fbf7b3f --workdir .mutation-before ...
  python scripts/mutation_score.py --report                  # tables from finished runs

Per module it prints killed / survived / equivalent and the score killed / (killed + survived).
"Survived" includes mutants no listed test reaches and timeouts; a mutant that crashes the
test run (mutmut's exit 255, which it labels "timeout") is killed. Equivalent mutants (the
program behaves the same) are listed in EQUIVALENT with the reason, and are not counted.
Run without PYTHONPATH pointing at a checkout: mutmut must import its mutated copy.
"""

from __future__ import annotations

import fnmatch
import json
import glob
import os
import random
import shutil
import subprocess
import sys

from absl import app
from absl import flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # run as documented, without PYTHONPATH
from reproduce.core import cli  # pylint: disable=g-import-not-at-top,wrong-import-position

_WORKDIR = flags.DEFINE_string("workdir", os.path.join(REPO, ".mutation"),
                               "scratch copies and logs (default: .mutation/, git-ignored)")
_MAX_CHILDREN = flags.DEFINE_integer("max-children", 2, "mutants tested at once (mutmut's)",
                                     lower_bound=1)
_SAMPLE = flags.DEFINE_integer("sample", None,
                               "test a seeded sample of at most this many mutants per module "
                               "(the rest are reported as not checked)", lower_bound=1)
_REV = flags.DEFINE_string("rev", None,
                           "mutate and test this commit's tree instead of the working tree "
                           "(the score before a change; use another --workdir)")
_MODULES = flags.DEFINE_list("modules", None,
                             "only these of the groups' modules (glob patterns, e.g. "
                             "reproduce/analysis/pipeline.py): every mutant, or the --sample")
_REPORT = flags.DEFINE_bool("report", False, "only print the tables")
_SURVIVORS = flags.DEFINE_bool("survivors", False, "also list surviving mutants")

# Tests that run the code in a subprocess: mutmut sees no call from them, so they never test
# a mutant, and would only slow the two runs of the whole selection.
SUBPROCESS_TESTS = [
    "tests/test_sam.py::test_global_sam_on_two_replicas_equals_one_device",
    "tests/test_budget_kept.py::test_mini_cli_plans_from_a_measurement_and_reports_its_accounting",
    "tests/test_budget.py::test_importing_planning_imports_no_tensorflow",
    "tests/test_compare.py::test_cli_exit_codes",
    "tests/test_scaling.py::test_cli_error_is_one_line_exit_2_with_tensorflow_chatter_on",
    "tests/test_scaling.py::test_cli_flag_error_is_one_line_before_tensorflow",
]

# group -> (modules mutated, the fast test files that cover them)
GROUPS = {
    "analysis": (["reproduce/analysis/*.py"],
                 ["tests/test_scaling.py", "tests/test_verdicts.py", "tests/test_prediction.py",
                  "tests/test_claims_per_family.py", "tests/test_compare.py",
                  "tests/test_report.py", "tests/test_mutation_gaps.py"]),
    "planning": (["reproduce/planning/*.py"],
                 ["tests/test_budget.py", "tests/test_published.py",
                  "tests/test_mutation_gaps.py"]),
    "published": (["reproduce/core/published.py"],
                  ["tests/test_published.py", "tests/test_budget.py",
                   "tests/test_mutation_gaps.py"]),
    "data": (["reproduce/data/order.py", "reproduce/data/repeated.py"],
             ["tests/test_repeated_augmentation.py", "tests/test_data.py",
              "tests/test_mutation_gaps.py"]),
    "metrics": (["reproduce/evaluation/metrics.py"],
                ["tests/test_evaluation_metrics.py", "tests/test_mutation_gaps.py"]),
    "train": (["reproduce/train/agc.py", "reproduce/train/optim.py", "reproduce/train/losses.py",
               "reproduce/train/sam.py", "reproduce/train/run_record.py",
               "reproduce/train/budgeting.py"],
              ["tests/test_optim.py", "tests/test_sam.py", "tests/test_budget_kept.py",
               "tests/test_mutation_gaps.py"]),
    "convert_deepmind": (["model_defs/converters/deepmind.py"],
                         ["tests/test_unpickler.py", "tests/test_mutation_gaps.py"]),
    "stats": (["model_defs/stats.py"],
              ["tests/test_budget.py", "tests/test_published.py", "tests/test_mutation_gaps.py"]),
}

# Groups whose module builds its tables at import time: each mutant's worker imports it anew
# (a fork server that pre-imported the tests would hold the unmutated tables).
IMPORT_TIME = {"published"}

# mutant name -> why it cannot change behaviour. Not counted in the score.
EQUIVALENT: dict[str, str] = {
    "model_defs.stats.xǁTallyǁconv__mutmut_8":
        "in_ch / groups for in_ch // groups: a grouped conv's in_ch is a multiple of groups, "
        "and Tally.add truncates to int; the float product is exact below 2**53",
    "model_defs.converters.deepmind.x__as_dict__mutmut_2":
        "drops **kwargs: the unpickler calls it by REDUCE, which passes positional args only",
    "reproduce.train.run_record.x_record__mutmut_5":
        "train_size default None for 0: both are falsy, and every use is `train_size or ...`",
    # mutmut numbers mutants in source order; this entry read _22, which is now the call
    # without `jft` (a TypeError, not equivalent).
    "reproduce.planning.allocation.x_reference_train_flops__mutmut_20":
        "resolution None for 224 on the full NFNets: their default resolution is 224",
    "reproduce.analysis.figures.x__scaling_panel__mutmut_112":
        "color 'CRIMSON' for 'crimson': matplotlib's colour names are case-insensitive",
    "reproduce.analysis.fits.x_fit_all__mutmut_93":
        "compute_kind of points[1] for points[0]: load_points gives every point of a fit one "
        "compute kind, and a fit has at least 3 points",
    "reproduce.analysis.prediction.x__judged__mutmut_4":
        "tests interval[1] for interval[0] is None: every caller passes [None, None] or two "
        "numbers (_exp_interval, _loss_part)",
    "reproduce.analysis.seeds.x_min_of_normals__mutmut_5":
        "drops dtype=float: the next lines add float noise, so integer losses give the same",
    "reproduce.data.repeated.x_train_dataset__mutmut_163":
        "drops map(deterministic=True): tf.data's default is deterministic, and the kit never "
        "turns it off (pipelines.py sets options.deterministic = True)",
    "reproduce.analysis.pipeline.xǁFamilyRunsǁestimates__mutmut_9":
        "bincount of indices without dtype=int: every caller passes integers (np.arange, or "
        "bootstrap.case_bootstrap's indices.astype(int)), which keep their dtype",
    "reproduce.analysis.outputs.x_points_to_csv__mutmut_11":
        "writes None instead of '': csv.writer writes None as an empty field",
}

# mutmut's exit-code meaning (mutmut/stats.py status_by_exit_code), folded into three.
_KILLED = {"killed", "caught by type check"}
# mutmut's worker exits -1 (255) when running the tests raised (mutmut/workers/isolation.py:
# `except Exception: exit_code = -1`) and reports it as "timeout"; its own time limit sends
# SIGXCPU (codes 24, -24, 152). A mutant that crashes the test run fails the suite: killed.
_CRASHED = 255


def _status(code, status_by_exit_code) -> str:
  if code == _CRASHED:
    return "killed"
  name = status_by_exit_code.get(code, "not checked") if code is not None else "not checked"
  if name in _KILLED:
    return "killed"
  if name in ("not checked", "check was interrupted by user"):
    return "not checked"
  return "survived"  # survived, no tests, timeout, suspicious, segfault


def _copy_tree(dest: str, rev: str | None = None) -> None:
  """Tracked and untracked-but-not-ignored files of the working tree as they are now, or the
  tree of commit ``rev`` (to measure the tests of an earlier commit on the same mutants)."""
  if rev:
    os.makedirs(dest)
    archive = subprocess.run(["git", "archive", rev], cwd=REPO, check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", dest], input=archive, check=True)
    return
  files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO,
                         check=True, capture_output=True).stdout.decode().split("\0")
  for rel in filter(None, files):
    src = os.path.join(REPO, rel)
    if not os.path.isfile(src):
      continue
    os.makedirs(os.path.dirname(os.path.join(dest, rel)) or dest, exist_ok=True)
    shutil.copy2(src, os.path.join(dest, rel))


def _config(modules: list[str], tests: list[str], warmup: str = "collect") -> str:
  quoted = lambda xs: "[" + ", ".join(json.dumps(x) for x in xs) + "]"
  return "\n".join([
      "[tool.mutmut]",
      'source_paths = ["reproduce", "model_defs"]',
      f"only_mutate = {quoted(modules)}",
      f"pytest_add_cli_args_test_selection = {quoted(tests)}",
      # No --durations table, no cache; the repo's addopts would add both.
      'pytest_add_cli_args = ["-o", "addopts=", "-p", "no:cacheprovider", "-q", "-x"]',
      # TensorFlow is not fork-safe once it has run ops: fork from a clean server.
      'process_isolation = "forkserver"',
      f'forkserver_warmup = "{warmup}"',
      "use_git_change_detection = false",
      "timeout_multiplier = 5.0",
      "timeout_constant = 20.0",
      "",
  ])


def _mutant_names(dest: str, modules: list[str]) -> list[tuple[str, str]]:
  """(file, name) of every mutant mutmut makes of ``modules`` (made in memory, in the copy)."""
  code = ("import io, sys, pathlib\n"
          "from mutmut.__main__ import get_mutant_name, write_all_mutants_to_file\n"
          "for path in sys.argv[1:]:\n"
          "  r = write_all_mutants_to_file(out=io.StringIO(), source=open(path).read(),\n"
          "                                filename=pathlib.Path(path))\n"
          "  for n in r.mutant_names:\n"
          "    print(path, get_mutant_name(pathlib.Path(path), n))\n")
  files = sorted({f for m in modules for f in glob.glob(os.path.join(dest, m))})
  out = subprocess.run([sys.executable, "-c", code, *[os.path.relpath(f, dest) for f in files]],
                       cwd=dest, check=True, capture_output=True, text=True).stdout
  return [tuple(line.split(" ", 1)) for line in out.splitlines() if line.strip()]


def _chosen_mutants(dest: str, modules: list[str], sample: int | None,
                    only: list[str] | None) -> list[str]:
  """Mutant names for mutmut's command line ([] = all): each module's seeded sample of
  ``sample`` (the same on every run of the same code), restricted to the ``only`` modules."""
  if not sample and not only:
    return []
  by_module: dict[str, list[str]] = {}
  for module, mutant in _mutant_names(dest, modules):
    if not only or any(fnmatch.fnmatch(module, pattern) for pattern in only):
      by_module.setdefault(module, []).append(mutant)
  chosen = []
  for module, names in sorted(by_module.items()):
    chosen += sorted(random.Random(f"{module}:{sample}").sample(names, min(sample, len(names)))
                     if sample else names)
  return chosen


def run_group(name: str, workdir: str, max_children: int, sample: int | None,
              rev: str | None = None, only: list[str] | None = None) -> None:
  modules, tests = GROUPS[name]
  dest = os.path.join(workdir, name)
  shutil.rmtree(dest, ignore_errors=True)
  _copy_tree(dest, rev)
  tests = [t for t in tests if os.path.exists(os.path.join(dest, t))]
  tests += [f"--deselect={t}" for t in SUBPROCESS_TESTS if t.split("::")[0] in tests]
  with open(os.path.join(dest, "pyproject.toml"), "a") as f:
    f.write("\n" + _config(modules, tests, "none" if name in IMPORT_TIME else "collect"))
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  env.update(TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
  mutmut = os.path.join(os.path.dirname(sys.executable), "mutmut")
  chosen = _chosen_mutants(dest, modules, sample, only)
  if only and not chosen:
    return  # none of this group's modules was asked for
  with open(os.path.join(workdir, f"{name}.log"), "w") as log:
    subprocess.run([mutmut, "run", "--max-children", str(max_children), *chosen], cwd=dest,
                   env=env, stdout=log, stderr=subprocess.STDOUT, check=False)


def counts(workdir: str, name: str) -> dict[str, dict[str, list[str]]]:
  """module -> status -> mutant names, from the .meta files mutmut leaves in mutants/."""
  modules, _ = GROUPS[name]
  out: dict[str, dict[str, list[str]]] = {}
  root = os.path.join(workdir, name, "mutants")
  if not os.path.isdir(root):
    return out
  here = os.getcwd()
  os.chdir(os.path.join(workdir, name))  # mutmut reads its configuration on import
  try:
    from mutmut.__main__ import status_by_exit_code
  finally:
    os.chdir(here)
  for dirpath, _, filenames in os.walk(root):
    for fn in filenames:
      if not fn.endswith(".py.meta"):
        continue
      rel = os.path.relpath(os.path.join(dirpath, fn), root)[:-len(".meta")]
      if not any(fnmatch.fnmatch(rel, m) for m in modules):
        continue
      with open(os.path.join(dirpath, fn)) as f:
        meta = json.load(f)
      table = out.setdefault(rel, {"killed": [], "survived": [], "equivalent": [],
                                   "not checked": []})
      for mutant, code in sorted(meta.get("exit_code_by_key", {}).items()):
        status = "equivalent" if mutant in EQUIVALENT else _status(code, status_by_exit_code)
        table[status].append(mutant)
  return out


def report(workdir: str, names: list[str], show_survivors: bool,
           only: list[str] | None = None) -> None:
  print("| module | killed | survived | equivalent | score |")
  print("|---|---:|---:|---:|---:|")
  survivors = []
  for name in names:
    for module, table in sorted(counts(workdir, name).items()):
      if only and not any(fnmatch.fnmatch(module, pattern) for pattern in only):
        continue
      k, s, e = (len(table[x]) for x in ("killed", "survived", "equivalent"))
      score = f"{100 * k / (k + s):.0f}%" if k + s else "-"
      pending = f" ({len(table['not checked'])} not checked)" if table["not checked"] else ""
      print(f"| {module} | {k} | {s} | {e} | {score}{pending} |")
      survivors += table["survived"]
  if show_survivors:
    print("\nsurvivors (see them with `mutmut show NAME` in the group's directory):")
    for mutant in survivors:
      print(" ", mutant)


def main(argv: list[str]) -> None:
  """``argv[1:]``: the groups to run (default: all of GROUPS)."""
  names = argv[1:] or list(GROUPS)
  unknown = sorted(set(names) - set(GROUPS))
  if unknown:
    cli.fail(f"unknown group(s) {unknown}; choose from {list(GROUPS)}")
  if _REV.value and subprocess.run(["git", "rev-parse", "--verify", "--quiet",
                                    f"{_REV.value}^{{commit}}"], cwd=REPO, capture_output=True,
                                   check=False).returncode:
    cli.fail(f"--rev: {_REV.value} is not a commit of {REPO}")
  if not _REPORT.value:
    os.makedirs(_WORKDIR.value, exist_ok=True)
    for name in names:
      print(f"[{name}] mutating {GROUPS[name][0]}", flush=True)
      run_group(name, _WORKDIR.value, _MAX_CHILDREN.value, _SAMPLE.value, _REV.value,
                _MODULES.value)
  report(_WORKDIR.value, names, _SURVIVORS.value, _MODULES.value)


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
