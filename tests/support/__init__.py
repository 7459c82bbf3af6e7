"""Helpers shared by the test suite: a local SLURM cluster and the MLflow UI in
headless Chromium (see slurm.py and mlflow_ui.py)."""
