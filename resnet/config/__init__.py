"""config.yaml: typed sections, loading, one cell's job, and what is checked before any job starts.

    schema.py     the typed-section toolkit (``setting``, ``parse``): types, bounds, one-line errors
    sections.py   the sections of config.yaml (data, mlflow, plan, recipes, engine, resources)
    load.py       load_config (presets laid over, rules that span keys), --set overrides, plan_cells
    job.py        a cell's Job: its Recipe (the run's identity) and the settings around it
    preflight.py  what the workflow checks before any job (data locations, GPUs, optional libraries)
"""
