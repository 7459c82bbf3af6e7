"""The suite's own rules: a missing piece skips a test with the reason, and fails it under CI=true;
no test sees the checkout's results/, .snakemake/ or MLflow store."""
from __future__ import annotations

import subprocess

import pytest

import tests.support as support
from tests.support.workflow import _SKIP_TOP, checkout_commit, copy_repo


@pytest.mark.parametrize("ci, outcome", [("", pytest.skip.Exception), ("true", pytest.fail.Exception)],
                         ids=["locally-skips", "under-CI-fails"])
def test_a_missing_cifar_tarball_skips_or_fails_under_ci(monkeypatch, tmp_path, ci, outcome):
    monkeypatch.setattr(support, "CIFAR_TARBALL", tmp_path / "absent.tar.gz")
    monkeypatch.setenv("CI", ci)
    with pytest.raises((pytest.skip.Exception, pytest.fail.Exception)) as caught:  # a skip must not skip this test
        support.require_cifar()
    assert caught.type is outcome and "CIFAR-10 tarball not found at" in str(caught.value)
    assert "absent.tar.gz" in str(caught.value)


def test_the_copy_of_the_checkout_has_no_outputs_and_the_checkouts_commit(tmp_path):
    assert {"results", ".snakemake", ".venv"} <= _SKIP_TOP
    repo = copy_repo(tmp_path)
    assert (repo / "Snakefile").is_file() and (tmp_path / "shared").is_symlink()
    assert not any((repo / name).exists() for name in ("results", ".snakemake", ".venv"))
    commit = checkout_commit()
    if commit is None:
        support.skip_or_fail("the checkout is not a git repository: its copy records no commit")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True)
    assert head.stdout.strip() == commit
    # modified tracked files show in the copy as in the checkout: provenance's "dirty" agrees
    modified = [subprocess.run(["git", "diff", "HEAD", "--name-only", "--diff-filter=M"], cwd=where,
                               capture_output=True, text=True, check=True).stdout for where in (support.REPO_ROOT, repo)]
    assert modified[0] == modified[1]
