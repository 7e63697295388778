"""The kit's lowest layer: file I/O, the results schema, CLI helpers and the published numbers.

Every other package of ``reproduce`` may import ``core``; ``core`` imports none of them.
"""
