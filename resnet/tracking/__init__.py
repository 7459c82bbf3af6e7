"""The MLflow mirror of the run folders; the only package of the project that imports mlflow.

    store.py   opening the store (SQLite or a server), retrying a busy SQLite file
    run.py     one cell's run: tags, params, description, curve, final numbers (Tracker)
    sync.py    the store rebuilt from the run folders; the report run of each workflow run
"""
