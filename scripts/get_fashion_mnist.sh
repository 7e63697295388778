#!/usr/bin/env bash
# Puts Fashion-MNIST's four IDX files where the study looks first: Debian/Ubuntu's
# dataset-fashion-mnist package (/usr/share/datasets/fashion-mnist). Needs apt-get and root
# (or sudo); elsewhere it says what else works. Does nothing when the files are there.
set -euo pipefail
dir=/usr/share/datasets/fashion-mnist
have=0
for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte \
         t10k-labels-idx1-ubyte; do
  [[ -f $dir/$f.gz ]] && have=$((have + 1))
done
if ((have == 4)); then
  exit 0
fi
sudo=()
if [[ $(id -u) != 0 ]]; then
  sudo=(sudo)
fi
if command -v apt-get >/dev/null; then
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" apt-get install -y -qq dataset-fashion-mnist >/dev/null
  echo "Fashion-MNIST installed in $dir"
else
  echo "no apt-get here: prepare tfds' fashion_mnist (tfds build fashion_mnist --data_dir=DIR," \
       "then --data_dir=DIR), or use --dataset=digits" >&2
  exit 2
fi
