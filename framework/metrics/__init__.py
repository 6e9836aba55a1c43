"""Metrics computed the way the field computes them; pure numpy, one module per family of numbers."""
