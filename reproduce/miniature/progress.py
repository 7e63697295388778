"""What the study's jobs report while they run: events to the study's process and the line
printed for each."""

from __future__ import annotations

import time

from reproduce.core import formatting


def emit(events, kind: str, **fields) -> None:
  """Sends one event to the study's process (``events``: a queue, or None)."""
  if events is not None:
    events.put(dict(kind=kind, time=time.time(), **fields))


def format_progress(event: dict, done: int, total: int, elapsed: float,
                    eta: float | None) -> str:
  """The study's line for one finished run or fine-tune event (``total``: the runs planned;
  an LR beyond an edge optimum adds one, so the count may pass it)."""
  eta_text = "" if eta is None else f" ETA {formatting.duration(eta)}"
  tail = f"| elapsed {formatting.duration(elapsed)}{eta_text}"
  name, status = event["name"], event.get("status", "")
  if event["kind"] == "diverged":
    return f"  [{done:3d}/~{total}] {name:<34} diverged: {event['error']}  {tail}"
  r = event["results"]
  ratio = r.get("training_over_planned")
  budget = "" if ratio is None else f" x{ratio:.2f} of plan"
  if event["kind"] == "finetune":
    return (f"  [{done:3d}/~{total}] fine-tune {name:<24} {r.get('steps') or 0:4d} steps  top1 "
            f"{r['heldout_top1']:.3f} (pre-trained {event['pretrained_top1']:.3f})  "
            f"{status}{budget}  {tail}")
  return (f"  [{done:3d}/~{total}] {name:<34} {r['epochs']:6.2f} ep {r['steps']:5d} steps  "
          f"loss {r['heldout_loss']:.3f} top1 {r['heldout_top1']:.3f}  {status}{budget}  "
          f"{tail}")
