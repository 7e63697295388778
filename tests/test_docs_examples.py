"""The README's and docs' examples do what the docs say (benchmarks/docs_examples.py).

Every example marked ``fast`` runs here, in document order in one scratch directory, and
must exit as documented, print what its marker expects and the figures it quotes. Examples
marked ``slow`` (training: the README's pre-training run, its evaluation and fine-tune) are
run by ``python benchmarks/docs_examples.py --slow``; here only their markers are checked.
"""

from __future__ import annotations

import os
import sys

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO_ROOT, "benchmarks"))
import docs_examples  # pylint: disable=g-import-not-at-top,wrong-import-position

EXAMPLES = docs_examples.collect_all()
FAST = [e for e in EXAMPLES if e.kind == "fast"]
_OUTPUTS = {}


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
  return str(tmp_path_factory.mktemp("docs_examples"))


def _run(example, scratch_dir):
  if example.name not in _OUTPUTS:
    _OUTPUTS[example.name] = docs_examples.run(example, scratch_dir)
  return _OUTPUTS[example.name]


@pytest.mark.parametrize("example", FAST, ids=[e.name for e in FAST])
def test_fast_example_does_what_the_docs_say(example, scratch):
  problems, output = _run(example, scratch)
  assert not problems, f"{example.name}: {'; '.join(problems)}\n{output[-3000:]}"


def test_a_changed_figure_fails_the_check(scratch):
  """The README's planner example quotes 110k core hours and LR 1.6; a different figure
  beside it (as if the docs or the code had drifted) is caught."""
  example = next(e for e in FAST if "nfnet_f7plus --epochs=8" in e.code)
  assert "core_hours = 110000 +- 1%" in example.figures
  _, output = _run(example, scratch)
  assert docs_examples.check_figure(output, "core_hours = 110000 +- 1%") is None
  assert docs_examples.check_figure(output, "core_hours = 120000 +- 1%") == (
      "figure 'core_hours = 120000 +- 1%': printed 110000")
  assert docs_examples.check_figure(output, "base LR = 0.8 +- 0.001") is not None


def test_the_acceptance_examples_are_marked():
  """The chain the README promises: pre-training above chance, its offline evaluation, its
  fine-tune; the mini LR rule and the one-line errors are fast examples."""
  pretrain = [e for e in EXAMPLES if e.path == "README.md" and "pretrain_mini.py" in e.code]
  assert [(e.kind, e.figures) for e in pretrain] == [("slow", ("top1 >= 0.5",))]
  evaluate = [e for e in EXAMPLES if e.path == "docs/evaluate.md" and e.kind == "slow"]
  assert evaluate and "--datasets=digits" in evaluate[0].code
  finetune = [e for e in EXAMPLES if e.path == "docs/finetune.md" and e.kind == "slow"]
  assert finetune and "--init=/tmp/f0" in finetune[0].code
  assert any("nfnet_mini" in e.code and "base LR = 0.4 +- 0" in e.figures for e in FAST)
  assert sum(e.exit_code == 2 for e in FAST) >= 3


@pytest.mark.parametrize("marker, message", [
    ("<!-- example: quick -->\n```bash\ntrue\n```\n", "must start with one of"),
    ("<!-- example: fast; exits=2 -->\n```bash\ntrue\n```\n", "cannot read 'exits=2'"),
    ('<!-- example: fast; figure="top1 above 0.5" -->\n```bash\ntrue\n```\n', "NAME OP VALUE"),
    ("<!-- example: fast -->\ntext\n```bash\ntrue\n```\n", "right before a ```bash"),
])
def test_a_bad_marker_names_its_line(marker, message):
  with pytest.raises(docs_examples.ExampleError) as raised:
    docs_examples.collect("# title\n\n" + marker, "x.md")
  assert str(raised.value).startswith("x.md:3:") and message in str(raised.value)


def test_markers_read_exit_codes_texts_and_figures():
  text = ('<!-- example: slow; exit=2; expect="a; \\"b\\""; figure="heldout loss <= 1" -->\n'
          "\n```bash\necho hi\n```\n")
  (example,) = docs_examples.collect(text, "x.md")
  assert (example.kind, example.exit_code, example.expects, example.figures, example.line) == (
      "slow", 2, ('a; "b"',), ("heldout loss <= 1",), 3)
  assert docs_examples.figure_value('done: heldout loss 0.92 top1 0.69', "heldout loss") == 0.92
  assert docs_examples.figure_value('"core_hours": 110,000.0', "core_hours") == 110000.0
