"""Datasets: uploads validated row by row and kept in the artifact store."""
