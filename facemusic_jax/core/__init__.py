"""Shared machinery: mesh and sharding, checkpoints, metrics, user errors."""
