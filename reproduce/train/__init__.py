"""The training engine as parts: run directory, optimizer (AGC), strategy, steps,
checkpoints, summaries, results, and the loop that strings them together.

``pretrain`` and ``finetune`` compose these parts; nothing here imports ``analysis``.
"""
