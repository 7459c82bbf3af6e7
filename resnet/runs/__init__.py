"""A cell's run folder, results/runs/<scale>/<model>/seed-<n>/, and the files in it.

    files.py       atomic writes (every file the project writes), strict JSON, curve.csv
    records.py     the records, each defined once: metrics.json (Metrics), checkpoint.pt (Checkpoint,
                   with the loop's TrainState)
    folder.py      where a run folder lives, and what a new run finds there (done, another recipe)
    provenance.py  git commit, versions, device, host, seed
    progress.py    the lines a training run prints
"""
