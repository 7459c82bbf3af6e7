"""The suite's own rules: a missing piece skips a test with the reason, and fails it under CI=true."""
from __future__ import annotations

import pytest

import tests.support as support


@pytest.mark.parametrize("ci, outcome", [("", pytest.skip.Exception), ("true", pytest.fail.Exception)],
                         ids=["locally-skips", "under-CI-fails"])
def test_a_missing_cifar_tarball_skips_or_fails_under_ci(monkeypatch, tmp_path, ci, outcome):
    monkeypatch.setattr(support, "CIFAR_TARBALL", tmp_path / "absent.tar.gz")
    monkeypatch.setenv("CI", ci)
    with pytest.raises((pytest.skip.Exception, pytest.fail.Exception)) as caught:  # a skip must not skip this test
        support.require_cifar()
    assert caught.type is outcome and "CIFAR-10 tarball not found at" in str(caught.value)
    assert "absent.tar.gz" in str(caught.value)

