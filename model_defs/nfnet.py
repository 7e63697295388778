"""NFNet family (placeholder until the builders land)."""
