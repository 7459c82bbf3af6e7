"""The MLflow UI on loopback and a headless Chromium to look at it, for tests.

    ui = start_mlflow_ui("sqlite:////tmp/x/mlflow.db")
    try:
        html = chromium_dump_dom(f"{ui.url}/#/experiments/1/runs")
        chromium_screenshot(f"{ui.url}/#/experiments/1/runs", "/tmp/runs.png")
    finally:
        ui.stop()

MLflow 3 URLs: the runs list is ``#/experiments/ID/runs`` (a bare
``#/experiments/ID`` opens an overview page instead), a run's charts are
``#/experiments/ID/runs/RUN_ID/model-metrics``, all runs' charts
``#/experiments/ID/runs?compareRunsMode=CHART``. Rendered charts show up as
``main-svg`` elements in the dumped DOM.

Chromium comes from Debian (``apt-get install chromium``); ensure_chromium()
installs it when missing and possible, else skips the test with the reason
(under ``CI=true`` it fails instead).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.support import skip_or_fail

CHROMIUM_NAMES = ("chromium", "chromium-browser")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _kill_group(proc: subprocess.Popen, grace: float = 10) -> None:
    """Stop a process started with start_new_session=True, with everything it spawned."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    # children may outlive the leader; the group id is the leader's pid
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if proc.poll() is None:
        proc.wait(timeout=grace)


# ---------------------------------------------------------------------------- MLflow UI
@dataclass
class MlflowUI:
    """A running ``mlflow ui``; ``stop()`` ends its whole process group."""

    url: str
    port: int
    proc: subprocess.Popen
    log_path: Path
    startup_seconds: float

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        _kill_group(self.proc)

    def __enter__(self) -> "MlflowUI":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _mlflow_executable() -> str:
    beside = Path(sys.executable).with_name("mlflow")
    if beside.exists():
        return str(beside)
    found = shutil.which("mlflow")
    if not found:
        raise RuntimeError("no mlflow executable beside this Python or on PATH")
    return found


def start_mlflow_ui(store_uri: str, port: int | None = None, timeout: float = 60,
                    log_dir: str | os.PathLike | None = None) -> MlflowUI:
    """Start ``mlflow ui`` on 127.0.0.1 for ``store_uri``; return once GET /health answers.

    One worker (the default four take twice as long to start) and no job
    runner (MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false): with it, MLflow also
    starts background processes that outlive the server. The server runs in a
    process group of its own so that stop() ends all of it."""
    port = port or free_port()
    log_dir = Path(log_dir or tempfile.mkdtemp(prefix="mlflow-ui-"))
    log_path = log_dir / f"mlflow-ui-{port}.log"
    env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    cmd = [_mlflow_executable(), "ui", "--backend-store-uri", store_uri,
           "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    t0 = time.monotonic()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True)
    ui = MlflowUI(url=f"http://127.0.0.1:{port}", port=port, proc=proc, log_path=log_path,
                  startup_seconds=0.0)
    deadline = t0 + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow ui exited with {proc.returncode}:\n{ui.log()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{ui.url}/health", timeout=2) as resp:
                if resp.status == 200:
                    ui.startup_seconds = time.monotonic() - t0
                    return ui
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        time.sleep(0.3)
    ui.stop()
    raise TimeoutError(f"mlflow ui not healthy after {timeout} s:\n{ui.log()[-3000:]}")


# ---------------------------------------------------------------------------- Chromium
def find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def ensure_chromium() -> str:
    """Path of a Chromium binary; installs Debian's package when missing.

    Skips the calling test (fails under CI=true) where it cannot be installed."""
    path = find_chromium()
    if path:
        return path
    if sys.platform != "linux" or shutil.which("apt-get") is None:
        skip_or_fail("chromium is not installed and there is no apt-get to install it")
    if os.geteuid() != 0:
        skip_or_fail("chromium is not installed; installing it needs root (apt-get install chromium)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    steps = (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "chromium"])
    for cmd in steps:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-1:]
            skip_or_fail(f"'{' '.join(cmd)}' failed: {' '.join(tail)}")
    path = find_chromium()
    if not path:
        skip_or_fail("apt-get install chromium succeeded but no chromium binary is on PATH")
    return path


def _chromium(args: list[str], url: str, timeout: float) -> subprocess.CompletedProcess:
    binary = ensure_chromium()
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    cmd = [
        binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", "--window-size=1400,900",
        # without this the charts are often not drawn in a headless page
        "--run-all-compositor-stages-before-draw",
        # let the single-page app load and render before the DOM is taken
        "--virtual-time-budget=15000",
        *args, url,
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        raise TimeoutError(f"chromium did not finish within {timeout} s for {url}") from None
    finally:
        _kill_group(proc, grace=2)
        shutil.rmtree(profile, ignore_errors=True)
    result = subprocess.CompletedProcess(cmd, proc.returncode, out, err)
    if proc.returncode != 0:
        raise RuntimeError(f"chromium exited with {proc.returncode} for {url}:\n{err[-3000:]}")
    return result


def chromium_dump_dom(url: str, timeout: float = 60) -> str:
    """The page's DOM after its scripts ran (headless Chromium --dump-dom)."""
    return _chromium(["--dump-dom"], url, timeout).stdout


def chromium_screenshot(url: str, path: str | os.PathLike, timeout: float = 60) -> Path:
    """Save a 1400x900 PNG screenshot of the rendered page at ``path``."""
    path = Path(path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    _chromium([f"--screenshot={path}"], url, timeout)
    if not path.exists() or path.stat().st_size == 0:
        raise RuntimeError(f"chromium wrote no screenshot to {path}")
    return path
