"""Duplicate photos: hashes, candidate pairs, evidence, grouping with a keeper, and journaled actions."""
