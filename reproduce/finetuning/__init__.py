"""Fine-tuning on the training engine: ``init`` (weights from a pre-training run or converted
weights, a fresh head, any resolution), ``recipe`` (config keys, plan, SAM and repeated
augmentation, compute accounting) and ``run`` (the library behind ``reproduce.finetune``).
See docs/finetune.md.
"""
