"""Command line: one command per cell, and the small tools around it.

    python -m resnet train --config config.yaml --cell cifar-resnet-56/seed-0 [--set KEY=VALUE ...]
    python -m resnet config --cell cifar-resnet-56/seed-0   # what that cell trains, as the workflow hands it
    python -m resnet plan --config config.yaml          # the cells of the configured plan
    python -m resnet synthetic-imagenet --out DIR       # the small synthetic ImageNet-layout set
    python -m resnet prepare-imagenet --config config.yaml   # ImageNet ready: archives -> class folders, checked
    python -m resnet cost --config config.yaml          # projected device-hours of the plan
    python -m resnet evaluate RUN_FOLDER                 # a finished cell's weights, evaluated again
    python -m resnet mlflow-sync --config config.yaml   # rebuild the MLflow store from the run folders

--config (config.yaml by default) may be repeated: each file is laid over the ones before it, as
snakemake's --configfile does (--config config.yaml --config results-reference/config.yaml).

Exit status: 0 done; 1 the cell failed (diverged, or interrupted more often than
resources.max_resubmits; metrics.json says why), or its files could not be written (no space left:
one line names the folder); 2 bad input (one line says what and how to fix it); 73 the run folder
is held by another trainer of the cell (one line names it and the holder; run again once that one
has ended); 75 interrupted by a signal after writing a checkpoint (run the same command to resume).
With --record-failure (the workflow's train jobs) a failure of any kind is recorded in
metrics.json with status failed and the job exits 0: the tables say why, and the next workflow
run retries the cell.
"""
from __future__ import annotations

import argparse
import json
import sys
import traceback
from contextlib import nullcontext
from pathlib import Path

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1  # the cell failed (diverged, or out of resubmissions); metrics.json says why
EXIT_BUSY = 73  # EX_CANTCREAT: another trainer holds the run folder; try again once it has ended
EXIT_INTERRUPTED = 75  # EX_TEMPFAIL: try again later
DEFAULT_CONFIG = "config.yaml"


def _bad_input_errors() -> tuple[type[BaseException], ...]:
    from resnet.config.schema import ConfigError
    from resnet.data.errors import DataError
    from resnet.paper.names import ModelNameError
    from resnet.runs.records import CheckpointError, RecordError

    return ConfigError, DataError, ModelNameError, CheckpointError, RecordError


def _config(args: argparse.Namespace):
    """config.yaml, any further --config files laid over it in order (as snakemake's --configfile),
    then the --set KEY=VALUE overrides; validated."""
    from resnet.config.load import lay_over, load_config, read_config_file, with_overrides

    raw: dict = {}
    for path in args.config or [DEFAULT_CONFIG]:
        lay_over(raw, read_config_file(path))
    return load_config(with_overrides(raw, getattr(args, "set", None) or []))


def _config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", action="append", metavar="FILE",
                        help=f"the experiment's config (default {DEFAULT_CONFIG}); repeat it to lay more files "
                             f"over it in order, as snakemake's --configfile does")


def _job(args: argparse.Namespace):
    """The job to train: from the workflow's --recipe/--settings JSON, or from config.yaml and --cell."""
    from resnet.config.job import job_from_parts, resolve_cell
    from resnet.config.schema import ConfigError
    from resnet.runs.folder import run_dir

    if args.recipe or args.settings:
        if not (args.recipe and args.settings):
            raise ConfigError("give both --recipe and --settings (the workflow passes both), or --cell")
        try:
            job = job_from_parts(json.loads(args.recipe), json.loads(args.settings))
        except json.JSONDecodeError as error:
            raise ConfigError(f"--recipe / --settings: not JSON ({error})") from None
        return job, Path(args.out) if args.out else run_dir(job.scale, job.cell)
    if not args.cell:
        raise ConfigError("give --cell MODEL/seed-N (e.g. cifar-resnet-56/seed-0), or --recipe and --settings")
    job = resolve_cell(_config(args), args.cell)
    return job, Path(args.out) if args.out else run_dir(job.scale, job.cell)


def cmd_train(args: argparse.Namespace) -> int:
    from resnet.engine.distributed import rank
    from resnet.engine.launch import processes_for, run_processes
    from resnet.runs.lock import RunFolderBusy, hold_run_folder

    job, out = _job(args)
    try:
        if args.launch:
            processes = processes_for(job)
            if processes > 1:  # the launcher's processes run this command without --launch
                with hold_run_folder(out, wait_s=args.wait_for_folder):
                    pass  # a busy folder is refused here, with this status, rather than by process 0
                argv = [word for word in args.argv if word not in ("--launch", "--record-failure")]
                return run_processes(job, processes, argv, out, args.record_failure, args.retry_of or None)
        # Process 0 holds the folder from the start to the failure record (train() holds it too).
        with hold_run_folder(out, wait_s=args.wait_for_folder) if rank() == 0 else nullcontext():
            return _train_and_record(job, out, args)
    except RunFolderBusy as busy:
        print(f"busy: {busy}", file=sys.stderr)
        return EXIT_BUSY


def _train_and_record(job, out: Path, args: argparse.Namespace) -> int:
    from resnet.engine.distributed import rank
    from resnet.engine.loop import train
    from resnet.engine.outcome import record_failure
    from resnet.engine.stops import Diverged, GaveUp, Interrupted
    from resnet.runs.lock import RunFolderBusy
    from resnet.runs.records import RecordError

    try:
        metrics = train(job, out, quiet=args.quiet, retry_of=args.retry_of or None, wait_s=args.wait_for_folder)
    except (GaveUp, Diverged) as stop:
        print(f"failed: {stop}", file=sys.stderr)
        return 0 if args.record_failure else EXIT_FAILED
    except Interrupted as stop:
        print(f"interrupted: {stop}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except RunFolderBusy:
        raise  # nothing of this cell's to record: the folder is another trainer's
    except Exception as error:
        if not args.record_failure:
            raise
        if isinstance(error, RecordError):  # the record itself is unreadable: kept, the tables say why
            print(f"failed: {job.cell}: {error}", file=sys.stderr)
            return 0
        # Inside the workflow a failure is recorded and the job ends 0: the tables say why, the
        # cell is not resubmitted (resources.max_resubmits is for interruptions only), and the
        # next run of the workflow retries it. Bad input gets its one line, a crash its traceback.
        if not isinstance(error, _bad_input_errors()) and _no_room(error) is None:
            traceback.print_exc()
        reason = (_no_room(error) or f"{type(error).__name__}: {error}").splitlines()[0][:500]
        try:
            if rank() == 0:
                record_failure(job, out, reason, retry_of=args.retry_of or None)
        except OSError as unwritten:
            print(f"failed: {job.cell}: {reason}; the failure could not be recorded either "
                  f"({unwritten.strerror})", file=sys.stderr)
            return EXIT_FAILED
        print(f"failed: {job.cell}: {reason} (recorded in {out / 'metrics.json'})", file=sys.stderr)
        return 0
    if metrics is None:  # a training process other than 0: process 0 reports
        return 0
    shown = {k: round(v, 2) for k, v in metrics.final.items() if isinstance(v, float)}
    print(f"{job.cell}: {metrics.status} {shown} -> {out}")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    """One cell's resolved recipe and settings, as the workflow hands them to its train job."""
    from resnet.config.job import resolve_cell

    job = resolve_cell(_config(args), args.cell)
    print(json.dumps({"cell": job.cell, "recipe": job.recipe.to_dict(), "recipe_digest": job.recipe.digest(),
                      "settings": job.settings()}, indent=2))
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from resnet.config.load import plan_cells
    from resnet.runs.folder import run_dir

    config = _config(args)
    for cell in plan_cells(config):
        print(f"{cell.id}\t{cell.dataset}\t{run_dir(config.scale, cell.id)}")
    return 0


def cmd_synthetic_imagenet(args: argparse.Namespace) -> int:
    from resnet.data.imagenet.synthetic import make_synthetic_imagenet

    print(make_synthetic_imagenet(args.out, seed=args.seed))
    return 0


def cmd_prepare_imagenet(args: argparse.Namespace) -> int:
    """data.imagenet made ready for its cells: the archives prepared into class folders (once), the
    folder listed and checked; ``--receipt`` records what the cells will read (the workflow's rule)."""
    import signal

    from resnet.config.preflight import imagenet_kind
    from resnet.config.schema import ConfigError, parse
    from resnet.config.sections import Data
    from resnet.data.imagenet.folders import imagenet_listing
    from resnet.runs.files import atomic_write_text

    if args.settings:
        try:
            settings = json.loads(args.settings)
        except json.JSONDecodeError as error:
            raise ConfigError(f"--settings: not JSON ({error})") from None
        data, workers = parse(Data, settings.get("data") if isinstance(settings, dict) else None, "data"), args.workers or 1
    else:
        config = _config(args)
        data, workers = config.data, args.workers or config.resources.imagenet_prepare.cpus

    def stop(signum, _frame):  # a class being extracted finishes; the next run resumes after it
        raise SystemExit(EXIT_INTERRUPTED)

    signal.signal(signal.SIGTERM, stop)
    listing = imagenet_listing(data, workers=workers)
    print(f"ImageNet ready: {listing.describe()} in {listing.root} (listing sha256 {listing.digest[:16]})")
    if args.receipt:
        receipt = {"source": data.imagenet, "kind": imagenet_kind(data.imagenet), "root": listing.root,
                   "classes": listing.num_classes, "train_images": listing.count("train"),
                   "val_images": listing.count("val"), "content_hash": listing.digest}
        atomic_write_text(Path(args.receipt), json.dumps(receipt, indent=2) + "\n")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """A finished cell's weights evaluated again, each number beside the one metrics.json records."""
    from resnet.engine.evaluate import evaluate_run

    numbers = evaluate_run(Path(args.folder), device=args.device)
    differ = False
    for key, measured, recorded in numbers:
        same = recorded is not None and abs(measured - float(recorded)) < 1e-9
        differ |= recorded is not None and not same
        note = "recorded: none" if recorded is None else ("the recorded number" if same else f"recorded: {recorded:.4f}")
        print(f"{key}: {measured:.4f} ({note})")
    return EXIT_FAILED if differ else 0


def cmd_cost(args: argparse.Namespace) -> int:
    from resnet.cost import format_cost, plan_cost

    config = _config(args)
    costs, device = plan_cost(config, throughput=args.throughput, measure_iterations=args.measure_iterations)
    print(format_cost(config, costs, device))
    return 0


def cmd_mlflow_sync(args: argparse.Namespace) -> int:
    """Create or complete the MLflow run of every run folder of the scale, and the report run of the
    results folder above them (a lost or new store, or one that was busy during the summary step)."""
    from resnet.runs.folder import runs_root
    from resnet.tracking.sync import sync_report_run, sync_run_folders

    config = _config(args)
    runs = Path(args.runs) if args.runs else runs_root(config.scale)
    if not runs.is_dir():
        print(f"error: no run folders at '{runs}': train some cells first, or give --runs", file=sys.stderr)
        return EXIT_BAD_INPUT
    uri, experiment = config.mlflow.tracking_uri, config.mlflow.experiment
    print(f"mirroring the run folders under {runs} to {uri} (experiment {experiment!r})", flush=True)
    finished = sorted(path.parent for path in runs.glob("*/seed-*/metrics.json"))
    results = sync_run_folders(uri, experiment, finished, config.scale, echo=lambda line: print(line, flush=True))
    for folder in sorted(path for path in runs.glob("*/seed-*") if path.is_dir() and path not in finished):
        print(f"{folder.parent.name}/{folder.name}: unfinished (no metrics.json); its next training job logs its run")
    missed = sorted(cell for cell, outcome in results.items() if outcome is None)
    print(f"{len(results) - len(missed)} of {len(results)} finished cells mirrored"
          + (f"; not mirrored: {', '.join(missed)} (see the warnings)" if missed else ""))
    results_folder = runs.parent.parent  # results/runs/<scale> -> results/
    warnings: list[str] = []
    report = sync_report_run(uri, experiment, results_folder, config.scale,
                             echo=lambda line: print(line, flush=True), warnings=warnings)
    return EXIT_FAILED if missed or (report is None and warnings) else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m resnet", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    _add_train(commands)
    _add_tools(commands)
    return parser


def _add_train(commands) -> None:
    train = commands.add_parser("train", help="train (or resume) one cell")
    _config_option(train)
    train.add_argument("--cell", help="MODEL/seed-N, e.g. cifar-resnet-56/seed-0")
    train.add_argument("--recipe", help="a cell's resolved recipe as JSON (the workflow passes this)")
    train.add_argument("--settings", help="the engine, data, tracking settings as JSON (the workflow passes this)")
    train.add_argument("--retry-of", help="the failure id of the failed run this one retries (the workflow passes it)")
    train.add_argument("--out", help="run folder (default results/runs/<scale>/<cell>)")
    train.add_argument("--record-failure", action="store_true",
                       help="on failure write metrics.json with status failed and exit 0 (the workflow uses this)")
    train.add_argument("--wait-for-folder", type=float, default=0.0, metavar="SECONDS",
                       help="if another trainer holds the run folder, wait up to SECONDS for it before "
                            "exiting with status 73 (default: exit at once; the workflow passes a wait)")
    train.add_argument("--launch", action="store_true",
                       help="ImageNet: run engine.processes training processes (0: one per visible GPU)")
    train.add_argument("--quiet", action="store_true", help="no progress lines")
    train.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="override a config key, e.g. --set recipes.cifar10.lr=0.05 (repeatable)")
    train.set_defaults(func=cmd_train)


def _add_tools(commands) -> None:
    show = commands.add_parser("config", help="print one cell's resolved recipe and settings as JSON")
    _config_option(show)
    show.add_argument("--cell", required=True, help="MODEL/seed-N, e.g. cifar-resnet-56/seed-0")
    show.add_argument("--set", action="append", metavar="KEY=VALUE",
                      help="override a config key, e.g. --set scale=paper (repeatable)")
    show.set_defaults(func=cmd_config)

    plan = commands.add_parser("plan", help="list the cells of the configured plan")
    _config_option(plan)
    plan.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key (repeatable)")
    plan.set_defaults(func=cmd_plan)

    synthetic = commands.add_parser("synthetic-imagenet", help="write the synthetic ImageNet-layout set")
    synthetic.add_argument("--out", required=True)
    synthetic.add_argument("--seed", type=int, default=0)
    synthetic.set_defaults(func=cmd_synthetic_imagenet)

    prepare = commands.add_parser("prepare-imagenet", help="make data.imagenet ready: the ILSVRC2012 archives "
                                  "prepared into class folders (once), the folder listed and checked")
    _config_option(prepare)
    prepare.add_argument("--set", action="append", metavar="KEY=VALUE",
                         help="override a config key, e.g. --set data.imagenet=/data/ilsvrc2012 (repeatable)")
    prepare.add_argument("--settings", help="the settings as JSON (the workflow passes this instead of --config)")
    prepare.add_argument("--workers", type=int, default=0,
                         help="processes extracting the training archive (default resources.imagenet_prepare.cpus)")
    prepare.add_argument("--receipt", help="write what the cells will read here as JSON (the workflow's rule)")
    prepare.set_defaults(func=cmd_prepare_imagenet)

    evaluate = commands.add_parser("evaluate", help="evaluate a finished cell's weights again, beside its recorded numbers")
    evaluate.add_argument("folder", help="a cell's run folder (metrics.json and weights.pt or checkpoint.pt)")
    evaluate.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    evaluate.set_defaults(func=cmd_evaluate)

    cost = commands.add_parser("cost", help="projected device-hours of the configured plan, before running it")
    _config_option(cost)
    cost.add_argument("--measure-iterations", type=int, default=2,
                      help="timed training steps per model on this device (0: only --throughput rates)")
    cost.add_argument("--throughput", help="CSV with columns model,device,images_per_s (benchmarks/gpu.py writes one)")
    cost.set_defaults(func=cmd_cost)

    sync = commands.add_parser("mlflow-sync", help="rebuild or complete the MLflow store from the run folders")
    _config_option(sync)
    sync.add_argument("--set", action="append", metavar="KEY=VALUE",
                      help="override a config key, e.g. --set mlflow.tracking_uri=http://host:5000 (repeatable)")
    sync.add_argument("--runs", help="the scale's run folders (default results/runs/<scale>)")
    sync.set_defaults(func=cmd_mlflow_sync)


def _no_room(error: BaseException) -> str | None:
    """A full disk or quota, as one line naming the folder and what to do; None for other errors."""
    import errno

    if not isinstance(error, OSError) or error.errno not in (errno.ENOSPC, errno.EDQUOT):
        return None
    where = Path(error.filename or "the run folder")
    if where.name.startswith(".") and where.name.endswith(".tmp"):  # a file being written atomically
        where = where.parent
    return (f"no space left for '{where}' ({error.strerror}): free space on its file system, or train into "
            f"another folder (--out, or another working directory for results/); the last checkpoint "
            f"written is kept, and the same command resumes from it")


def _unwritable(error: OSError) -> bool:
    """A folder the user may not write to: bad input (fix the permissions or the path), not a crash."""
    import errno

    return isinstance(error, PermissionError) or error.errno in (errno.EROFS, errno.EACCES, errno.EPERM)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # the command as given (the launcher reuses it)
    try:
        code = args.func(args)
        sys.stdout.flush()  # here, so that a closed pipe is noticed inside the try
        return code
    except _bad_input_errors() as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:
        # The reader went away (`python -m resnet plan | head -3`): stop quietly, as a program killed by
        # SIGPIPE would. stdout points at /dev/null so the interpreter's final flush cannot fail again.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + 13  # 128 + SIGPIPE, the status a shell reports for such a pipeline stage
    except OSError as error:
        if _no_room(error) is not None:
            print(f"error: {_no_room(error)}", file=sys.stderr)
            return EXIT_FAILED
        if not _unwritable(error):
            raise
        where = error.filename or "the results folder"
        print(f"error: cannot write to {str(where)!r} ({error.strerror}): make it writable, or choose another "
              f"folder with --out (train) or another working directory for results/", file=sys.stderr)
        return EXIT_BAD_INPUT
