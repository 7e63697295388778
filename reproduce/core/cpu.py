"""Which CPU this is: the name, family and model, and the vector units speed depends on.

A benchmark's ratios differ by CPU (an AMD Zen 5 without AMX and an Intel Xeon with AMX
rank the kit and timm differently: BENCHMARKS.md), so every table says on which CPU it was
taken. Virtual machines often report a generic name ("Intel(R) Xeon(R) Processor"), hence
the family, model and flags beside it. Reads Linux's /proc/cpuinfo; elsewhere, ``platform``.
"""

from __future__ import annotations

import os
import platform

CPUINFO = "/proc/cpuinfo"
# The flags that decide which kernels oneDNN and PyTorch pick, in the order printed.
VECTOR_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile",
                "amx_bf16", "amx_int8")


def parse_cpuinfo(text: str) -> dict[str, str]:
  """The fields of the first processor in a /proc/cpuinfo text."""
  fields = {}
  for line in text.splitlines():
    if not line.strip():
      if fields:
        break
      continue
    key, _, value = line.partition(":")
    fields.setdefault(key.strip(), value.strip())
  return fields


def _cpuinfo() -> dict[str, str]:
  try:
    with open(CPUINFO, encoding="utf-8") as f:
      return parse_cpuinfo(f.read())
  except OSError:
    return {}


def name(info: dict[str, str] | None = None) -> str:
  """The marketing name ("model name"), else what ``platform`` knows."""
  info = _cpuinfo() if info is None else info
  return info.get("model name") or platform.processor() or platform.machine()


def vector_flags(info: dict[str, str] | None = None) -> list[str]:
  """The ``VECTOR_FLAGS`` this CPU has, in that order."""
  info = _cpuinfo() if info is None else info
  present = set(info.get("flags", "").split())
  return [flag for flag in VECTOR_FLAGS if flag in present]


def bf16_unit(info: dict[str, str] | None = None) -> str | None:
  """The unit bfloat16 matmuls run on: 'AMX', 'AVX-512 BF16', or None (emulated)."""
  flags = vector_flags(info)
  if "amx_bf16" in flags:
    return "AMX"
  return "AVX-512 BF16" if "avx512_bf16" in flags else None


def describe(info: dict[str, str] | None = None) -> str:
  """One line: name, vendor/family/model, cores, vector flags and the bf16 unit."""
  info = _cpuinfo() if info is None else info
  ident = ", ".join(f"{label} {info[key]}" for label, key in
                    (("vendor", "vendor_id"), ("family", "cpu family"), ("model", "model"))
                    if key in info)
  flags = " ".join(vector_flags(info)) or "none of " + " ".join(VECTOR_FLAGS)
  return (f"{name(info)}{f' ({ident})' if ident else ''}, {os.cpu_count()} cores; "
          f"flags: {flags}; bf16 unit: {bf16_unit(info) or 'none (emulated)'}")
