"""Files written atomically, and the formats of the run folder's text files (JSON, the curve).

    <run>/curve.csv       one row per log interval (training error) with evaluations where made
    <run>/metrics.json    final numbers + provenance (resnet.runs.records.Metrics)

A file is written to a temporary name in the same folder and renamed into place, so a reader (or a
run killed half-way) never sees half a file. ``atomic_open`` is the project's one way of doing so
(run files, the decode cache, the tables and figures); it creates files with the permissions the
user's umask gives any new file (0644 under umask 022), so colleagues can read a shared results/.

Formats are strict: metrics.json is RFC 8259 JSON (a non-finite number is written as null, never as
a bare NaN token), and curve.csv writes an empty field for "not measured" (e.g. no evaluation at
that row) and ``nan`` / ``inf`` / ``-inf`` for a measured non-finite value (a diverged loss).
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

CURVE_COLUMNS = [
    "iteration", "epoch", "lr", "train_loss", "train_error", "val_error", "test_error",
    "images_per_s", "wall_time_s",
]
# Columns filled only at evaluation rows. A run's rows hold NaN there for "not evaluated" (an
# evaluation itself always yields a finite error), so NaN in these columns is written as empty.
EVALUATION_COLUMNS = ("val_error", "test_error")


def umask() -> int:
    """The process's umask, read without changing it where Linux allows (/proc), else set and restored."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    current = os.umask(0o022)
    os.umask(current)
    return current


@contextmanager
def atomic_open(path: Path) -> Iterator[IO[bytes]]:
    """A binary handle whose content appears at ``path`` only when the block ends without error.

    Written to a temporary file in the same folder, flushed to disk and renamed into place; on any
    error (or a kill) ``path`` keeps its previous content. The file gets mode 0666 minus the umask,
    like any file the user creates (mkstemp alone would make it 0600, unreadable to colleagues).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~umask())
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as error:
        Path(tmp).unlink(missing_ok=True)
        if error.filename is None and error.errno is not None:  # a write that failed (a full disk): name the file
            raise type(error)(error.errno, error.strerror, str(path)) from None
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_open(path) as handle:
        handle.write(data)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def _finite_or_null(value: Any) -> Any:
    """Non-finite floats (anywhere in nested dicts and lists) as None: JSON has no NaN or Infinity."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite_or_null(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_null(item) for item in value]
    return value


def json_text(values: Any) -> str:
    """Strict JSON (non-finite numbers written as null; allow_nan=False refuses any that slip by)."""
    return json.dumps(_finite_or_null(values), indent=2, sort_keys=False, allow_nan=False) + "\n"


def write_json(path: Path, values: dict[str, Any]) -> None:
    atomic_write_text(path, json_text(values))


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def write_curve(path: Path, rows: list[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CURVE_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: _fmt(row.get(key), key in EVALUATION_COLUMNS) for key in CURVE_COLUMNS})
    atomic_write_text(path, buffer.getvalue())


def _fmt(value: Any, evaluation: bool = False) -> str:
    """A curve field: empty = not measured (None; NaN in an evaluation column), else the number,
    with a measured non-finite value (a diverged loss) as 'nan', 'inf' or '-inf'."""
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return "" if evaluation else "nan"
        return f"{value:.6g}"  # inf and -inf come out as 'inf' and '-inf'
    return str(value)


def read_curve(path: Path) -> list[dict[str, float | None]] | None:
    """curve.csv as rows of floats: None where the field is empty (not measured), float('nan') or
    +-inf where a non-finite value was measured; None if the file is absent, empty or torn."""
    try:
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None:
                return None
            return [{key: (None if value in ("", None) else float(value)) for key, value in row.items()
                     if key is not None} for row in reader]
    except (FileNotFoundError, ValueError, csv.Error):
        return None
