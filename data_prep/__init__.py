"""Data preparation: synthetic videos, annotation files, and FFCV frame shards."""
