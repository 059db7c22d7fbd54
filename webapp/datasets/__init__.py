"""Datasets: uploads validated row by row and kept in the artifact store.

The package imports nothing on its own: its models are read by the lowest layers
(quotas, training), while its views and services read training's models.
"""
