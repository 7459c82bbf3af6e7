"""Deep Residual Learning for Image Recognition (He et al., 2015), reproduced.

The package is layered; a layer imports only the layers listed before it (tests/test_layers.py
checks this, and that no two modules import each other, directly or round a circle):

    paper/      the paper's numbers (Tables 1, 2, 3, 6; the figures' panels) and the model names
    config/     config.yaml as typed sections, loading and scale presets, a cell's recipe, pre-flight
    models/     the plain and residual nets, ghost batch norm, parameters and multiply-adds
    runs/       a run folder's files: atomic writes, metrics.json and checkpoint.pt, provenance
    data/       CIFAR-10 (sources, the on-device stream) and ImageNet (folders, crops, loaders)
    tracking/   the MLflow mirror (the only package that imports mlflow)
    engine/     training one cell: the step, the loop, the schedule, signals, tasks, processes
    report/     the tables, figures, per-cell curves and the summary, from the run folders
    cli.py, cost.py   the command line (`python -m resnet`) and the cost projection
"""
