"""Op time from a ``tf.profiler`` trace directory, summed by op type and by op.

Read with the XSpace proto module TensorFlow ships, because TensorBoard's profile plugin is not
a dependency of the kit. No flags here, so tests can import it (``op_profile.py`` defines them).
"""

from __future__ import annotations

import collections
import glob
import os

# Ops whose events enclose other ops' events: counting them would count their bodies twice.
CONTAINER_OPS = frozenset({"While", "StatelessWhile", "If", "StatelessIf", "Case",
                           "StatelessCase", "PartitionedCall", "StatefulPartitionedCall"})


def is_op_event(name: str) -> bool:
  """TF op events are named 'op/name:OpType'; executor and eager events have '::' or spaces."""
  if ":" not in name or "::" in name or " " in name:
    return False
  return name.rsplit(":", 1)[1] not in CONTAINER_OPS


def op_seconds(logdir: str, steps: int):
  """(seconds per step by op type, count per step by op type, seconds per step by op name)
  of the traces under ``logdir``, ``steps`` steps recorded."""
  from tensorflow.tsl.profiler.protobuf import xplane_pb2  # pylint: disable=g-import-not-at-top
  by_type, count, by_op = collections.Counter(), collections.Counter(), collections.Counter()
  for path in glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True):
    space = xplane_pb2.XSpace()
    with open(path, "rb") as f:
      space.ParseFromString(f.read())
    for plane in space.planes:
      for line in plane.lines:
        for event in line.events:
          name = plane.event_metadata[event.metadata_id].name
          if is_op_event(name):
            seconds = event.duration_ps / 1e12 / steps
            op_type = name.rsplit(":", 1)[1]
            by_type[op_type] += seconds
            count[op_type] += 1 / steps
            by_op[name] += seconds
  return by_type, count, by_op
