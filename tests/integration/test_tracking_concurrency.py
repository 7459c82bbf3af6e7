"""Many training jobs logging to the default SQLite MLflow store at once lose nothing and do not crash.

Eight separate processes (as eight SLURM jobs or eight local jobs would be) each open their own run in
the same, not yet existing, store and log 200 steps x 5 metrics in batches of 10 rows, as training
does at each checkpoint. resnet.tracking retries while MLflow reports the database busy
(TEMPORARILY_UNAVAILABLE), so no writer has to fall back on its warning.
"""
import subprocess
import sys
import textwrap
import time

import pytest

from tests.support.mlflow_store import metric_history, runs_of

pytestmark = pytest.mark.slow  # eight interpreters importing MLflow: about a minute on two cores

WRITERS = 8
STEPS = 200
METRICS = ("train_loss", "train_error", "val_error", "test_error", "lr")
ROWS_PER_BATCH = 10

WRITER = textwrap.dedent(
    """
    import sys, time
    from resnet.tracking.run import Tracker

    uri, index, start_at = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    steps, keys, per_batch = {steps}, {keys!r}, {per_batch}
    time.sleep(max(0.0, start_at - time.time()))  # all writers begin together
    tracker = Tracker(uri, "concurrency", run_name=f"writer-{{index}}", tags={{"writer": str(index)}},
                      params={{"index": index, "model": "cifar-resnet-20"}})
    rows = [{{"iteration": step, **{{key: index * 1000 + step + k / 10 for k, key in enumerate(keys)}}}}
            for step in range(1, steps + 1)]
    for start in range(0, steps, per_batch):
        tracker.log_rows(rows[start:start + per_batch])
    tracker.finish()
    print(tracker.run_id)
    """
).format(steps=STEPS, keys=METRICS, per_batch=ROWS_PER_BATCH)


def test_eight_writers_lose_no_metric(tmp_path):
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"  # the folder does not exist yet either
    start_at = time.time() + 8  # time for every interpreter to import mlflow first
    t0 = time.monotonic()
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, uri, str(i), str(start_at)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for i in range(WRITERS)
    ]
    results = [proc.communicate(timeout=300) for proc in procs]
    print(f"\n{WRITERS} writers x {STEPS} steps x {len(METRICS)} metrics: {time.monotonic() - t0:.1f} s")
    for proc, (out, err) in zip(procs, results):
        assert proc.returncode == 0, f"writer crashed (exit {proc.returncode}):\n{err[-3000:]}"
        # The Tracker turns store errors into warnings (training must go on); here none may occur.
        assert "warning: MLflow" not in err, err[-3000:]

    runs = {run["name"]: run for run in runs_of(uri, "concurrency")}
    assert sorted(runs) == sorted(f"writer-{i}" for i in range(WRITERS))
    for i in range(WRITERS):
        run = runs[f"writer-{i}"]
        assert run["status"] == "FINISHED"
        assert run["params"]["index"] == str(i)
        for k, key in enumerate(METRICS):
            history = metric_history(uri, run["run_id"], key)
            expected = [(step, pytest.approx(i * 1000 + step + k / 10)) for step in range(1, STEPS + 1)]
            assert history == expected, f"writer-{i} {key}: {len(history)} values, {STEPS} expected"
