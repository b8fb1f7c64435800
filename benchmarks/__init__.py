"""Benchmarks of every framework module against torch.nn."""
