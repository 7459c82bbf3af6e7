"""Live MLflow logging into a SQLite file on a network file system is refused before any job.

The mount table is handed in as text (the format of /proc/self/mounts): this machine has no network
file system to mount, so the table stands in for one; the lookup itself is the code the workflow runs.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from resnet.config.load import load_config, read_config_file, with_overrides
from resnet.config.preflight import check_mlflow_store, filesystem_type
from resnet.config.schema import ConfigError
from tests.support import REPO_ROOT

MOUNTS = """\
/dev/vda1 / ext4 rw,relatime 0 0
tmpfs /tmp tmpfs rw 0 0
head:/export/projects /shared/projects nfs4 rw,vers=4.2 0 0
10.0.0.1@o2ib:/scratch /scratch lustre rw 0 0
"""


def test_the_file_system_is_the_longest_mount_point_that_holds_the_path():
    assert filesystem_type(Path("/shared/projects/repro/results/mlflow.db"), MOUNTS) == "nfs4"
    assert filesystem_type(Path("/scratch/u/results"), MOUNTS) == "lustre"
    assert filesystem_type(Path("/shared/projects-old/x"), MOUNTS) == "ext4"  # a prefix of the name, not a folder
    assert filesystem_type(Path("/tmp/a/b"), MOUNTS) == "tmpfs"


def config(tracking_uri: str, live: bool, scale: str = "paper"):
    raw = with_overrides(read_config_file(REPO_ROOT / "config.yaml"),
                         [f"scale={scale}", f"mlflow.tracking_uri={tracking_uri}", f"mlflow.live={str(live).lower()}"])
    return load_config(raw)


def test_live_logging_to_sqlite_on_nfs_is_one_line_naming_both_ways_out():
    with pytest.raises(ConfigError) as error:
        check_mlflow_store(config("sqlite:////shared/projects/repro/results/mlflow.db", live=True), MOUNTS)
    message = str(error.value)
    assert "\n" not in message and "nfs4" in message and "mlflow.tracking_uri" in message
    assert "tracking server" in message and "mlflow.live: false" in message


@pytest.mark.parametrize("uri, live", [
    ("sqlite:////shared/projects/repro/results/mlflow.db", False),  # the summary step logs the runs
    ("sqlite:////home/u/results/mlflow.db", True),                  # a local disk
    ("http://head-node:5000", True),                                # a tracking server
])
def test_other_stores_pass(uri, live):
    check_mlflow_store(config(uri, live), MOUNTS)
