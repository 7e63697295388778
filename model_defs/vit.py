"""ViT family (placeholder until the builders land)."""
