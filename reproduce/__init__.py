"""Reproduction scripts and libraries for the NFNet-vs-ViT scaling study."""
