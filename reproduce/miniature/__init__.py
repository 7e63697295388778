"""The miniature study: the paper's compute-matched NFNet-vs-ViT sweep on a few CPU cores.

``grid`` plans the runs, ``workers`` trains them in worker processes, ``stages``
strings the stages together and fits and compares the results. ``python -m reproduce.study``
is the command-line front end.
"""
