"""Dataset builders and augmentation ops used by ``reproduce.data``.

``digits``       the scikit-learn handwritten digits as a TFDS builder (``sklearn_digits``).
``randaugment``  a stateless RandAugment: the same (image, seed) always gives the same output.
"""
