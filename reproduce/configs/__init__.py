"""Experiment configs (ml_collections) for reproduce.pretrain."""
