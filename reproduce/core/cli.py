"""What every command-line main shares: quiet TensorFlow start-up, flag parsing and one-line
errors.

On CPUs with AVX-512/AMX, ``import tensorflow`` writes an absl "InitializeLog" warning and a
oneDNN notice straight to file descriptor 2, whatever ``TF_CPP_MIN_LOG_LEVEL`` says. A user
who mistypes a flag must see one line, so the mains (1) validate flags before TensorFlow is
imported and (2) import it through ``import_tensorflow``, which sends descriptor 2 to a
temporary file during the import and replays it only if the import fails.

Imports therefore sit at the top of a module except where they would start TensorFlow (or
Keras, which imports it) too early, or load an optional dependency:
  - a main (``reproduce/<name>.py``) imports the TensorFlow-importing parts of the kit after
    its flags are checked and ``start_tensorflow`` ran;
  - what a main imports before that loads no TensorFlow: ``core/``, ``planning/`` (its
    ``cost.model_spec`` imports ``model_defs`` on first use), ``configs/`` (config files are
    read while the flags are parsed), ``evaluation/specs.py``, ``miniature/grid.py``;
  - a worker process of the study imports ``miniature/worker_pool.py`` before its initializer
    starts TensorFlow quietly, so its jobs import the rest there;
  - optional dependencies (torch, array_record) and slow ones a main needs on one path only
    (scikit-learn's sample image).
``tests/test_architecture.py`` lists these cases; a new lazy import belongs in one of them.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from typing import NoReturn

from absl import flags
from absl import logging

from reproduce.core import errors

USAGE_EXIT_CODE = 2


@contextlib.contextmanager
def _stderr_captured():
  """Descriptor 2 goes to a temporary file inside the block; replayed if the block raises."""
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile(mode="w+b") as sink:
    os.dup2(sink.fileno(), 2)
    try:
      yield
    except BaseException:
      os.dup2(saved, 2)
      sink.seek(0)
      os.write(2, sink.read())
      raise
    finally:
      os.dup2(saved, 2)
      os.close(saved)


INSTALL_HINT = ("TensorFlow is not installed: pip install -e '.[cpu]' (or '.[gpu]' on a GPU "
                "machine, '.[tpu]' on a Cloud TPU VM)")


def import_tensorflow():
  """Imports TensorFlow and Keras with their start-up notices kept off stderr; returns tf.

  Raises:
    ImportError: TensorFlow is not installed (the message says which extra to install).
  """
  if "tensorflow" not in sys.modules:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
      with _stderr_captured():
        import tensorflow  # pylint: disable=g-import-not-at-top,unused-import
        import keras  # pylint: disable=g-import-not-at-top,unused-import
    except ModuleNotFoundError as e:
      if e.name != "tensorflow":
        raise
      raise ImportError(INSTALL_HINT) from None
  return sys.modules["tensorflow"]


def start_tensorflow():
  """``import_tensorflow`` for a main: a missing TensorFlow is one line and exit 2."""
  try:
    return import_tensorflow()
  except ImportError as e:
    fail(first_line(e))


HELP_FLAGS = ("-h", "--help", "--helpshort", "--helpfull", "-?")


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing for ``app.run(main, flags_parser=parse_flags)``.

  A bad or unknown flag is one line and exit 2 (absl's own parser prints two lines and
  exits 1); ``--help`` prints the main's docstring and its flags, and exits 0; absl logging
  is at WARNING unless ``--verbosity`` is given.
  """
  if any(arg in HELP_FLAGS for arg in argv[1:]):
    print(sys.modules["__main__"].__doc__ or "")
    print(flags.FLAGS.main_module_help())
    sys.exit(0)
  try:
    rest = flags.FLAGS(argv)
  except flags.Error as e:
    fail(first_line(e))
  if not flags.FLAGS["verbosity"].present:
    # Libraries (tfds) log INFO lines under app.run; errors and results are the output.
    logging.set_verbosity(logging.WARNING)
  return rest


def first_line(error: BaseException) -> str:
  """The first line of an exception's message (KeyError quotes removed)."""
  text = str(error).strip()
  if isinstance(error, KeyError) and text[:1] in ("'", '"'):
    text = text[1:-1]
  lines = text.splitlines()
  return lines[0] if lines else type(error).__name__


def fail(message: str, exit_code: int = USAGE_EXIT_CODE) -> NoReturn:
  """Prints ``error: message`` as one line on stderr and exits (2: bad input)."""
  print(f"error: {message}", file=sys.stderr, flush=True)
  sys.exit(exit_code)


def refuse_stray_arguments(argv: list[str]) -> None:
  """One line and exit 2 when words that are not flags follow the command."""
  if len(argv) > 1:
    fail(f"unexpected arguments: {' '.join(argv[1:])}")


def user_error_types() -> tuple[type[Exception], ...]:
  """What a main reports as bad input: every ``errors.UserError``, and model_defs'
  ``UnknownModelError`` (the model library imports nothing of reproduce, so it cannot share
  the base; looked up only once imported, since until then nothing can have raised it)."""
  model_defs = sys.modules.get("model_defs")
  return (errors.UserError,) + ((model_defs.UnknownModelError,) if model_defs else ())


@contextlib.contextmanager
def errors_as_one_line(also: tuple[type[BaseException], ...] = (),
                       exit_codes: dict[type[BaseException], int] | None = None):
  """An error raised in the block becomes ``error: <its first line>`` and an exit: with
  ``exit_codes[type]`` for a type listed there (a diverged run: 1), with 2 for a user error
  (``user_error_types``) or one of ``also`` (OS or TensorFlow errors a main reports as bad
  input). Any other error propagates with its traceback."""
  try:
    yield
  except Exception as e:  # pylint: disable=broad-except  (re-raised below unless listed)
    for error_type, exit_code in (exit_codes or {}).items():
      if isinstance(e, error_type):
        fail(first_line(e), exit_code=exit_code)
    if isinstance(e, user_error_types() + tuple(also)):
      fail(first_line(e))
    raise


def define_training_flags() -> dict:
  """The flags every training main shares (pretrain, finetune): strategy, tpu, data_dir,
  manual_dir, allow_config_change; returns their FlagHolders keyed by the name of the run()
  argument each one sets (``--strategy`` sets ``strategy_kind``), for ``flag_values``."""
  return dict(
      strategy_kind=flags.DEFINE_enum(
          "strategy", "auto", ["auto", "tpu", "mirrored", "one_device"], "Distribution strategy."),
      tpu=flags.DEFINE_string("tpu", None, "TPU name, or 'local' on a TPU VM (also TPU_NAME)."),
      data_dir=flags.DEFINE_string("data_dir", None, "tfds data_dir / dataset root."),
      manual_dir=flags.DEFINE_string("manual_dir", None, "tfds manual_dir (ImageNet tars)."),
      allow_config_change=flags.DEFINE_bool(
          "allow_config_change", False, "Resume --model_dir even if its config.json differs."))


def flag_values(holders: dict) -> dict:
  """``{name: holder.value}``: flags passed to a function as keyword arguments, by name."""
  return {name: holder.value for name, holder in holders.items()}
