"""Analysis of finished runs: loading ``results.json``, frontiers, scaling-law fits,
figures and TensorBoard output, and the comparison with the published numbers.

Reads files only; never imports ``train`` or ``data``.
"""
