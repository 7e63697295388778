r"""The README's and docs' examples, run as a newcomer runs them, checked against what they say.

A fenced ``bash`` or ``python`` block is an example when an HTML comment marks it (only blank
lines between the comment and the fence):

  <!-- example: fast|slow[; exit=N][; expect="TEXT"]...[; figure="NAME OP VALUE"]... -->

- ``fast``: runs in seconds; ``tests/test_docs_examples.py`` runs every fast example.
- ``slow``: minutes (training); this script runs them (``--slow``), after the fast ones.
- ``exit=N``: the exit code (default 0). ``expect="TEXT"``: TEXT appears in stdout+stderr.
- ``figure="NAME OP VALUE"``: the last number printed after NAME (``top1 0.69``,
  ``"core_hours": 110000``) satisfies OP: ``>=``, ``<=``, or ``=`` with a tolerance
  (``core_hours = 110000 +- 1%`` or ``+- 500``).

Examples run in document order (README.md, then docs/*.md sorted) in one scratch directory,
so a later example may use an earlier one's output (the README's pre-training run feeds
docs/evaluate.md's evaluation and docs/finetune.md's fine-tune). In a command ``/tmp/``
becomes the scratch directory and ``python`` the running interpreter; the working directory
is the repository root (configs are given by their repository paths).

  python benchmarks/docs_examples.py --list            # every marked example
  python benchmarks/docs_examples.py --slow            # fast, then slow ones; exit 1 on failure
  python benchmarks/docs_examples.py --slow --only=README.md,docs/evaluate.md,docs/finetune.md
"""

from __future__ import annotations

import dataclasses
import glob
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)  # run as documented, without PYTHONPATH
from reproduce.core import cli  # pylint: disable=g-import-not-at-top,wrong-import-position

_SLOW = flags.DEFINE_bool("slow", False, "also run the slow examples")
_LIST = flags.DEFINE_bool("list", False, "list the examples, run nothing")
_ONLY = flags.DEFINE_list("only", [], "comma-separated doc files (default: all)")
_KEEP = flags.DEFINE_string("keep", None, "scratch directory to use and keep")

MARKER = re.compile(r"^<!--\s*example:\s*(.*?)\s*-->", re.S | re.M)  # at a line start
FENCE = re.compile(r"```(bash|python)\n(.*?)```", re.S)
KINDS = ("fast", "slow")
_OPTION = re.compile(r'\s*(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|(\S+))\s*')
_FIGURE = re.compile(r"(.+?)\s*(>=|<=|=)\s*(-?[\d.eE+-]+)\s*(?:\+-\s*([\d.eE+-]+)(%?))?\s*$")
TIMEOUT_S = {"fast": 120, "slow": 1200}


class ExampleError(ValueError):
  """A marker that cannot be read; names the file and line."""


@dataclasses.dataclass(frozen=True)
class Example:
  path: str          # relative to the repository root
  line: int          # of the fence
  kind: str          # fast | slow
  language: str      # bash | python
  code: str
  exit_code: int = 0
  expects: tuple[str, ...] = ()
  figures: tuple[str, ...] = ()

  @property
  def name(self) -> str:
    return f"{self.path}:{self.line}"


def parse_marker(text: str, where: str) -> dict:
  """``fast; exit=2; expect="x"`` -> {kind, exit_code, expects, figures}."""
  parts = [p.strip() for p in re.split(r';(?=(?:[^"]*"[^"]*")*[^"]*$)', text) if p.strip()]
  if not parts or parts[0] not in KINDS:
    raise ExampleError(f"{where}: example marker must start with one of {KINDS}: {text!r}")
  fields = dict(kind=parts[0], exit_code=0, expects=[], figures=[])
  for part in parts[1:]:
    match = _OPTION.fullmatch(part)
    if not match or match.group(1) not in ("exit", "expect", "figure"):
      raise ExampleError(f"{where}: cannot read {part!r} (use exit=N, expect=\"TEXT\", "
                         f"figure=\"NAME OP VALUE\")")
    key, value = match.group(1), match.group(2) if match.group(2) is not None else match.group(3)
    value = value.replace('\\"', '"')
    if key == "exit":
      fields["exit_code"] = int(value)
    elif key == "expect":
      fields["expects"].append(value)
    else:
      if not _FIGURE.match(value):
        raise ExampleError(f"{where}: figure {value!r} is not NAME OP VALUE")
      fields["figures"].append(value)
  return fields


def collect(text: str, path: str) -> list[Example]:
  """The marked examples of one markdown text."""
  examples = []
  for marker in MARKER.finditer(text):
    where = f"{path}:{text.count(chr(10), 0, marker.start()) + 1}"
    fields = parse_marker(marker.group(1), where)
    rest = text[marker.end():]
    fence = FENCE.match(rest.lstrip("\n"))
    if not fence:
      raise ExampleError(f"{where}: an example marker must come right before a ```bash or "
                         f"```python block")
    start = marker.end() + len(rest) - len(rest.lstrip("\n"))
    examples.append(Example(
        path, text.count("\n", 0, start) + 1, fields["kind"], fence.group(1), fence.group(2),
        fields["exit_code"], tuple(fields["expects"]), tuple(fields["figures"])))
  return examples


def doc_files(root: str = REPO_ROOT) -> list[str]:
  """README.md, then docs/*.md sorted: the order a reader follows, and the run order."""
  return ["README.md"] + sorted(os.path.relpath(p, root)
                                for p in glob.glob(os.path.join(root, "docs", "*.md")))


def collect_all(root: str = REPO_ROOT, only=None) -> list[Example]:
  examples = []
  for path in doc_files(root):
    if only and path not in only:
      continue
    with open(os.path.join(root, path), encoding="utf-8") as f:
      examples += collect(f.read(), path)
  return examples


def figure_value(output: str, name: str) -> float | None:
  """The last number printed right after ``name`` (``name 0.5``, ``"name": 0.5``)."""
  pattern = re.escape(name) + r'"?\s*[:=]?\s*(-?\d[\d,]*\.?\d*(?:[eE][-+]?\d+)?)'
  found = re.findall(pattern, output)
  return float(found[-1].replace(",", "")) if found else None


def check_figure(output: str, figure: str) -> str | None:
  """None when ``figure`` holds in ``output``, else what is wrong."""
  name, op, value, tolerance, percent = _FIGURE.match(figure).groups()
  actual = figure_value(output, name.strip())
  if actual is None:
    return f"figure {figure!r}: nothing printed after {name.strip()!r}"
  value = float(value)
  if op == ">=":
    ok = actual >= value
  elif op == "<=":
    ok = actual <= value
  else:
    allowed = float(tolerance or 0) * (abs(value) / 100 if percent else 1)
    ok = abs(actual - value) <= allowed
  return None if ok else f"figure {figure!r}: printed {actual:g}"


def script(example: Example, scratch: str) -> str:
  """The example's code as run: /tmp/ -> the scratch dir, python -> this interpreter."""
  code = example.code.replace("/tmp/", scratch.rstrip("/") + "/")
  if example.language == "bash":
    code = re.sub(r"(^|[\s;&|(])python(?=\s)", lambda m: m.group(1) + shlex.quote(sys.executable),
                  code)
  return code


def run(example: Example, scratch: str, env=None) -> tuple[list[str], str]:
  """Runs one example; returns (problems, output)."""
  code = script(example, scratch)
  command = (["bash", "-eo", "pipefail", "-c", code] if example.language == "bash"
             else [sys.executable, "-c", code])
  environment = dict(os.environ if env is None else env)
  environment["PYTHONPATH"] = os.pathsep.join(
      [REPO_ROOT] + [p for p in environment.get("PYTHONPATH", "").split(os.pathsep) if p])
  try:
    done = subprocess.run(command, cwd=REPO_ROOT, env=environment, capture_output=True,
                          text=True, timeout=TIMEOUT_S[example.kind], check=False)
  except subprocess.TimeoutExpired:
    return [f"timed out after {TIMEOUT_S[example.kind]} s"], ""
  output = done.stdout + done.stderr
  problems = []
  if done.returncode != example.exit_code:
    problems.append(f"exit {done.returncode}, documented {example.exit_code}")
  if "Traceback (most recent call last)" in output:
    problems.append("a traceback")
  problems += [f"{text!r} not printed" for text in example.expects if text not in output]
  problems += [p for p in (check_figure(output, f) for f in example.figures) if p]
  return problems, output


def main(argv: list[str]) -> int:
  cli.refuse_stray_arguments(argv)
  only = [p for p in _ONLY.value if p] or None
  unknown = sorted(set(only or ()) - set(doc_files()))
  if unknown:
    cli.fail(f"--only: {', '.join(unknown)} is not one of the doc files "
             f"({', '.join(doc_files())})")
  examples = [e for e in collect_all(only=only) if _SLOW.value or e.kind == "fast"]
  if _LIST.value:
    for e in examples:
      print(f"{e.name}\t{e.kind}\texit={e.exit_code}\t{e.code.splitlines()[0]}")
    return 0
  scratch = _KEEP.value or tempfile.mkdtemp(prefix="docs-examples-")
  os.makedirs(scratch, exist_ok=True)
  failed = 0
  for e in examples:
    start = time.time()
    problems, output = run(e, scratch)
    verdict = "ok" if not problems else "FAIL: " + "; ".join(problems)
    print(f"{e.name} ({e.kind}, {time.time() - start:.0f} s): {verdict}", flush=True)
    names = [_FIGURE.match(f).group(1).strip() for f in e.figures]
    figures = [f"{n} {figure_value(output, n)}" for n in names]
    if figures:
      print("  printed: " + ", ".join(figures), flush=True)
    if problems:
      failed += 1
      print("  " + "\n  ".join(output.strip().splitlines()[-15:]), flush=True)
  print(f"{len(examples) - failed}/{len(examples)} examples as documented (scratch: {scratch})")
  return 1 if failed else 0


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
