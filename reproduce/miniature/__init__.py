"""The miniature study: the paper's compute-matched NFNet-vs-ViT sweep on a few CPU cores.

``grid`` plans the runs; ``worker_pool`` runs one job per model in worker processes, and
``model_runs`` is one model's job (sweeps, the largest budget, fine-tunes), its runs where
``run_paths`` says, its events and lines in ``progress``, its core-seconds in ``accounting``;
``stages`` strings the stages together and fits and compares the results.
``python -m reproduce.study`` is the command-line front end.
"""
