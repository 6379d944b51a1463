"""LTX-Video components as Flax linen modules, one per file."""
