"""GPU benchmarks of the project's training paths, one go (about 6 minutes on one H100).

    python benchmarks/gpu.py                          # everything; the table is printed last
    python benchmarks/gpu.py --only cifar-20 packing  # some sections
    python benchmarks/gpu.py --quick --device cpu     # every section with tiny sizes (a test)

Sections (each runs in its own process under a time budget, so a failure or an overrun costs
only that section's rows; rows are kept as soon as they are measured):

  graph-check      The whole-step CUDA graph against the eager step: ResNet-20, same start, same
                   batches, 14 steps with one lr change (one recapture), deterministic kernels,
                   fp32 and bf16; IDENTICAL when losses and weights agree bit for bit (the eager
                   step run twice gives the noise floor); NOT CHECKED where no graph was replayed
                   (on a CPU the capture fails and the step runs eagerly).
  cifar-20/56/110  CIFAR ResNets at batch 128: (a) baseline = DataLoader workers + torchvision
                   transforms, fp32, eager, NCHW; (b) project eager = bf16 autocast +
                   channels_last + data set on the GPU, augmented there; (c) project graph = the
                   same with the whole step (forward, backward, SGD update) replayed as one CUDA
                   graph (resnet.step), as training runs it; (d) c + engine.compile (inductor
                   kernels inside the graph), for --compile-depths (default 20). Warm-up steps
                   (compilation, capture, worker start-up) are timed apart from the rate; "setup
                   s" is the step's own compile + capture time.
  r1202            ResNet-1202 at batch 128, a few steps of path c: peak memory.
  realdata         ResNet-20 trained by resnet.train.train on CIFAR-10 (the JPEG tarball) with the
                   paper's recipe compressed to 24 epochs of 45k (lr /10 at epochs 12 and 18):
                   test accuracy and wall time.
  imagenet-50/18   ResNet-50 / ResNet-18 at batch 256, the section pinned to --imagenet-cores cores
                   (8; as taskset): images/s on tensors already on the GPU, then from synthetic
                   JPEGs at ImageNet sizes through the DALI loader (GPU decoding) and the PIL
                   loader, with the pinned cores' busy time. Goal: DALI >= 0.9 of on-GPU.
  packing          k = 1, 4, 8 concurrent ResNet-20 trainings (separate processes, project path
                   with graphs) on one GPU: total images/s.

Data is made here (random CIFAR-size arrays, synthetic JPEGs in a temporary folder); the real
CIFAR-10 tarball is read from --cifar (default .bench-data/cifar10-jpeg.tar.gz, else
../shared/data/cifar10-jpeg.tar.gz). With $OUT set, the table goes to $OUT/gpu_results.md and
the training-path rates to $OUT/throughput.csv (the input of `python -m resnet cost --throughput`).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks import common  # noqa: E402
from benchmarks.common import fmt  # noqa: E402

# Section -> time budget in seconds (full size); the run as a whole stops at --budget.
SECTIONS = {"graph-check": 30, "cifar-20": 80, "cifar-56": 45, "r1202": 40, "realdata": 90, "imagenet-50": 75,
            "imagenet-18": 60,
            "packing": 60, "cifar-110": 50}
QUICK_BUDGET = 120  # per section, --quick
PACK_COUNTS = (1, 4, 8)
REALDATA_EPOCHS, REALDATA_MILESTONES, TRAIN_SIZE = 24, (12, 18), 50_000


def sizes(args) -> dict:
    """Everything that shrinks with --quick."""
    if args.quick:
        return dict(batch=32, cifar_images=2000, seconds=None, steps=3, warmup=2, graph_warmup=3, r1202_batch=2,
                    imagenet_model="resnet-18", imagenet_batch=8, crop=32, short_side=(36, 60), jpeg_sides=(40, 72),
                    jpeg_parts=2, jpeg_per_class=4, imagenet_workers=2, pack_counts=(1, 2), pack_seconds=1.0,
                    realdata_iterations=20, realdata_subset=1000)
    return dict(batch=128, cifar_images=50_000, seconds=args.seconds, steps=None, warmup=3, graph_warmup=4,
                r1202_batch=128, imagenet_model="resnet-50", imagenet_batch=256, crop=224, short_side=(256, 480),
                jpeg_sides=(300, 500), jpeg_parts=16, jpeg_per_class=20, imagenet_workers=args.imagenet_cores,
                pack_counts=PACK_COUNTS, pack_seconds=5.0, realdata_iterations=None, realdata_subset=0)


class Rows:
    """Measured rows, appended to a JSON-lines file as soon as each is known."""

    def __init__(self, path: Path, section: str) -> None:
        self.path, self.section = path, section

    def add(self, **row) -> None:
        row = {"section": self.section, **row}
        with open(self.path, "a") as handle:
            handle.write(json.dumps(row) + "\n")
        print(f"  {row}", flush=True)

    def guarded(self, model: str, path: str, measure) -> None:
        """Run one measurement; a failure becomes a row saying so, not a lost section."""
        try:
            measure()
        except Exception as error:
            traceback.print_exc()
            self.add(model=model, path=path, note=f"failed: {type(error).__name__}: {str(error)[:120]}")


def timing_row(timing: common.Timing, **extra) -> dict:
    return dict(images_per_s=timing.images_per_s, first_steps_s=timing.first_steps_s,
                peak_gb=timing.peak_memory_gb, steps=timing.steps, **extra)


def run_for(s: dict) -> dict:
    return dict(steps=s["steps"], seconds=s["seconds"])


# ----------------------------------------------------------------------------- CIFAR sections

def section_cifar(depth: int, args, rows: Rows) -> None:
    s, device = sizes(args), torch.device(args.device)
    model_name, batch = f"cifar-resnet-{depth}", s["batch"]
    images, labels, _ = common.cifar_train_arrays(None, size=s["cifar_images"])

    def baseline():
        torch.backends.cudnn.benchmark = True  # as the akamaster trainer sets it (project paths: make_step)
        torch.manual_seed(0)
        model = common.build_model(model_name).to(device)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
        workers = min(args.baseline_workers, 2) if args.quick else args.baseline_workers
        loader = common.baseline_loader(images, labels, batch, workers, pin_memory=device.type == "cuda")
        timing = common.time_steps(common.plain_step(model, optimizer), common.baseline_batches(loader, device),
                                   batch, device, warmup=s["warmup"], **run_for(s))
        rows.add(model=model_name, path="a baseline", batch=batch, **timing_row(
            timing, note=f"DataLoader {workers} workers, fp32, eager"))

    paths = {"b project eager": (False, False, "bf16, channels_last, GPU data, eager"),
             "c project graph": (True, False, "b + whole step as one CUDA graph: as training runs it"),
             "d project graph+compile": (True, True, "c with engine.compile (inductor kernels in the graph)")}

    def project(path: str):
        graphs, compiled, note = paths[path]

        def measure():
            cfg = common.bench_config(model_name, batch, args.device, bf16=True, channels_last=True,
                                      cuda_graphs=graphs, compile=compiled)
            _, _, step = common.make_model_and_step(cfg, device)
            # warm-up: the step's eager steps, the capture and one replay (graphs); compilation
            timing = common.time_steps(step, common.project_batches(images, labels, batch, device, True), batch,
                                       device, warmup=s["graph_warmup"] if graphs or compiled else s["warmup"],
                                       **run_for(s))
            rows.add(model=model_name, path=path, batch=batch, setup_s=step.setup_seconds,
                     **timing_row(timing, note=f"{note}; ran {step.mode}"))
        return measure

    rows.guarded(model_name, "a baseline", baseline)
    for path in paths:
        if path.startswith("d") and depth not in args.compile_depths:
            continue
        common.release(device)
        rows.guarded(model_name, path, project(path))


def section_graph_check(args, rows: Rows) -> None:
    """The whole-step CUDA graph trains exactly as the eager step: same losses, same weights.

    ResNet-20 from the same initialisation on the same batches, 14 steps with lr 0.1 -> 0.01 after
    step 9 (so one recapture), deterministic kernels; fp32, then bf16 autocast.
    """
    from resnet.engine.step import TrainStep

    s, device = sizes(args), torch.device(args.device)
    torch.use_deterministic_algorithms(True, warn_only=True)  # CUBLAS_WORKSPACE_CONFIG is set in main()
    images, labels, _ = common.cifar_train_arrays(None, size=2000)
    batch = s["batch"]

    def run(graphs: bool, bf16: bool):
        torch.manual_seed(0)
        model = common.build_model("cifar-resnet-20").to(device).to(memory_format=torch.channels_last)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
        step = TrainStep(model, optimizer, device, bf16=bf16, graphs=graphs)
        batches = common.project_batches(images, labels, batch, device, True)
        losses = []
        for i in range(14):
            for group in optimizer.param_groups:
                group["lr"] = 0.1 if i < 9 else 0.01
            losses.append(float(step(*next(batches))[0]))
        return losses, [p.detach().float().clone() for p in model.parameters()], step

    def gaps(a, b) -> tuple[float, float]:
        return (max(abs(x - y) for x, y in zip(a[0], b[0])),
                max(float((x - y).abs().max()) for x, y in zip(a[1], b[1])))

    for bf16 in (False, True):
        def measure(bf16=bf16):
            eager, again, graph = run(False, bf16), run(False, bf16), run(True, bf16)
            floor, (loss_gap, weight_gap) = gaps(eager, again), gaps(eager, graph)
            step = graph[2]
            # Without a replayed graph (no CUDA: the capture fails and the step trains on eagerly)
            # the comparison is eager against eager: it says nothing about the graph.
            verdict = ("NOT CHECKED (no graph replayed)" if step.replays == 0
                       else "IDENTICAL" if loss_gap == 0 and weight_gap == 0 else "DIFFERENT")
            rows.add(model="cifar-resnet-20", path=f"check graph == eager ({'bf16' if bf16 else 'fp32'})",
                     batch=batch, note=(f"{verdict}: max |loss diff| {loss_gap:.3g}, "
                                        f"max |weight diff| {weight_gap:.3g} over 14 steps (eager twice: "
                                        f"{floor[0]:.3g}, {floor[1]:.3g}); ran {step.mode}, {step.captures} "
                                        f"captures, {step.replays} replays"))
        rows.guarded("cifar-resnet-20", "check graph == eager", measure)


def section_r1202(args, rows: Rows) -> None:
    s, device = sizes(args), torch.device(args.device)
    batch = s["r1202_batch"]
    images, labels, _ = common.cifar_train_arrays(None, size=max(batch * 4, 1000))

    def measure():
        # As training runs it: the whole step as a CUDA graph (capture takes seconds, no compilation).
        graphs = not args.r1202_eager
        cfg = common.bench_config("cifar-resnet-1202", batch, args.device, bf16=True, channels_last=True,
                                  cuda_graphs=graphs)
        _, _, step = common.make_model_and_step(cfg, device)
        timing = common.time_steps(step, common.project_batches(images, labels, batch, device, True), batch, device,
                                   warmup=s["graph_warmup"], steps=1 if args.quick else 4)
        total = torch.cuda.get_device_properties(device).total_memory / 2**30 if device.type == "cuda" else None
        fits = "" if total is None else f"; device holds {total:.0f} GiB"
        rows.add(model="cifar-resnet-1202", path="c project graph" if graphs else "b project eager",
                 batch=batch, setup_s=step.setup_seconds, **timing_row(timing, note=f"peak memory{fits}; ran {step.mode}"))

    rows.guarded("cifar-resnet-1202", "project", measure)


# ----------------------------------------------------------------------------- real data

def _bench_config_dict(args, source: Path, s: dict) -> dict:
    """config.yaml with a 'bench' scale: the paper's CIFAR recipe (all 50k images) compressed to 24 epochs."""
    import yaml

    with open(common.REPO_ROOT / "config.yaml") as handle:
        config = yaml.safe_load(handle)
    batch = config["recipes"]["cifar10"]["batch_size"]
    per_epoch = TRAIN_SIZE / batch
    iterations = s["realdata_iterations"] or round(REALDATA_EPOCHS * per_epoch)
    milestones = [round(epoch * iterations / REALDATA_EPOCHS) for epoch in REALDATA_MILESTONES]
    recipe = {"iterations": iterations, "milestones": milestones, "eval_every": iterations, "log_every": 200}
    if args.quick:
        recipe.update(batch_size=s["batch"], bn_group=0, train_subset=s["realdata_subset"], test_subset=500,
                      val_size=500, log_every=5)
    config["scale"] = "bench"
    config["scales"]["bench"] = {
        "cifar10": recipe,
        "engine": {"device": args.device, "checkpoint_every": iterations},
        "data": {"cifar10": str(source), "cifar10_download": False, "cache": str(common.BENCH_DATA)},
        "mlflow": {"live": False},  # the benchmark times training, not tracking (and needs no mlflow)
    }
    return config


def section_realdata(args, rows: Rows) -> None:
    s, device = sizes(args), torch.device(args.device)
    source = Path(args.cifar) if args.cifar else common.default_cifar_source()
    if source is None or not source.exists():
        rows.add(model="cifar-resnet-20", path="train()", note="skipped: no CIFAR-10 (give --cifar)")
        return

    def measure():
        from resnet.engine import loop as training
        from resnet.config.load import load_config
        from resnet.config.job import resolve_cell

        job = resolve_cell(load_config(_bench_config_dict(args, source, s)), "cifar-resnet-20/seed-0")
        recipe = job.recipe
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="bench-realdata-") as out:
            metrics = training.train(job, Path(out), quiet=not args.quick)
        wall = time.perf_counter() - started
        peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
        accuracy = 100.0 - metrics.final["test_error"]
        trained_on = TRAIN_SIZE - recipe.val_size if not recipe.train_subset else recipe.train_subset
        rows.add(model="cifar-resnet-20", path="train()", batch=recipe.batch_size, images_per_s=metrics.images_per_s,
                 first_steps_s=metrics.first_step_s, setup_s=metrics.step["setup_s"], peak_gb=peak,
                 test_accuracy=accuracy, wall_s=wall,
                 note=(f"{recipe.iterations} it ({recipe.iterations * recipe.batch_size / trained_on:.1f} ep of "
                       f"{trained_on:,}), lr /10 at {list(recipe.milestones)}, BN groups of {recipe.bn_group}: "
                       f"test acc {accuracy:.2f}%, {wall:.0f} s wall ({metrics.wall_time_s:.0f} s training); ran "
                       f"{metrics.step['path']}, {metrics.step['captures']} captures"))

    rows.guarded("cifar-resnet-20", "train()", measure)


# ----------------------------------------------------------------------------- ImageNet

def _jpeg_part(job: tuple) -> str:
    from resnet.data.imagenet.synthetic import make_synthetic_imagenet

    folder, part, per_class, sides = job
    return str(make_synthetic_imagenet(Path(folder) / f"part-{part}", num_classes=10, train_per_class=per_class,
                                       val_per_class=1, min_side=sides[0], max_side=sides[1], seed=part))


def synthetic_jpegs(folder: Path, s: dict) -> Path:
    """ImageNet-size synthetic JPEGs, made in parallel parts and merged into one train/ tree."""
    import multiprocessing

    jobs = [(str(folder), part, s["jpeg_per_class"], s["jpeg_sides"]) for part in range(s["jpeg_parts"])]
    with multiprocessing.get_context("spawn").Pool(min(len(jobs), os.cpu_count() or 1)) as pool:
        parts = pool.map(_jpeg_part, jobs)
    root = folder / "imagenet"
    for part in map(Path, parts):
        for split in ("train", "val"):
            for file in (part / split).glob("*/*.JPEG"):
                target = root / split / file.parent.name
                target.mkdir(parents=True, exist_ok=True)
                file.rename(target / f"{part.name}-{file.name}")
    return root


def pin_cores(count: int) -> list[int]:
    """Pin this process (and every thread and process it starts) to ``count`` of its cores, as
    `taskset -c` would; returns them."""
    allowed = sorted(os.sched_getaffinity(0))
    cores = allowed[:max(1, min(count, len(allowed)))]
    os.sched_setaffinity(0, cores)
    return cores


def busy_seconds(cores: list[int]) -> float:
    """CPU seconds the given cores have spent busy since boot (/proc/stat: all but idle and iowait)."""
    ticks = os.sysconf("SC_CLK_TCK")
    busy = 0
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cores:
            numbers = [int(v) for v in values[:8]]
            busy += sum(numbers) - numbers[3] - numbers[4]
    return busy / ticks


def section_imagenet(depth: int, args, rows: Rows) -> None:
    """ResNet-{depth} at batch 256, pinned to --imagenet-cores cores: images/s on tensors already on
    the GPU, then trained from JPEG files through the DALI loader and the PIL loader (each with
    the cores as its workers), with the cores busy meanwhile."""
    s, device = sizes(args), torch.device(args.device)
    model_name = s["imagenet_model"] if args.quick else f"resnet-{depth}"
    crop = s["crop"]
    cores = pin_cores(s["imagenet_workers"])
    with tempfile.TemporaryDirectory(prefix="bench-imagenet-") as folder:
        started = time.perf_counter()
        root = synthetic_jpegs(Path(folder), s)
        count = sum(1 for _ in (root / "train").glob("*/*.JPEG"))
        print(f"  {count} synthetic JPEGs ({s['jpeg_sides'][0]}-{s['jpeg_sides'][1]} px sides) in "
              f"{time.perf_counter() - started:.0f} s; pinned to cores {cores}", flush=True)
        path = {(False, False): "b project eager", (True, False): "c project graph",
                (False, True): "b project eager+compile", (True, True): "d project graph+compile"}[
            (args.imagenet_graphs, args.imagenet_compile)]
        state = {"batch": s["imagenet_batch"]}

        def build():
            while True:
                try:
                    job = common.bench_config(model_name, state["batch"], args.device, bf16=True, channels_last=True,
                                              cuda_graphs=args.imagenet_graphs, compile=args.imagenet_compile)
                    _, _, step = common.make_model_and_step(job, device, num_classes=1000)
                    x = torch.randn(state["batch"], 3, crop, crop, device=device).contiguous(
                        memory_format=torch.channels_last)
                    y = torch.randint(0, 1000, (state["batch"],), device=device)
                    step(x, y)
                    return step, x, y
                except torch.cuda.OutOfMemoryError:
                    if state["batch"] <= 16:
                        raise
                    state["batch"] //= 2  # the largest batch that fits
                    common.release(device)

        step, x, y = build()
        batch = state["batch"]

        def timed(batches, label: str, note: str) -> None:
            started = time.perf_counter()
            for _ in range(s["warmup"]):  # worker / pipeline start-up, untimed
                step(*next(batches))
            common.synchronize(device)
            first = time.perf_counter() - started
            busy, started = busy_seconds(cores), time.perf_counter()
            timing = common.time_steps(step, batches, batch, device, warmup=0, **run_for(s))
            used = (busy_seconds(cores) - busy) / (time.perf_counter() - started)
            if label == "tensors on GPU":
                state["gpu"] = timing.images_per_s
            ratio = timing.images_per_s / state["gpu"] if state.get("gpu") else float("nan")
            goal = " (goal >= 0.9)" if model_name == "resnet-50" else ""
            rows.add(model=model_name, path=f"{path}, {label}", batch=batch, **{**timing_row(
                timing, note=f"{note}; {ratio:.2f} of on-GPU rate{goal}; {used:.1f} of {len(cores)} cores busy"),
                "first_steps_s": first, "cores": len(cores), "cores_busy": used})

        def on_device():
            def same():
                while True:
                    yield x, y
            timed(same(), "tensors on GPU", "upper bound: no input pipeline")

        def loader(kind: str):
            from resnet.data.imagenet.pil import imagenet_train_loader

            from resnet.data.imagenet import dali as imagenet_dali
            make = imagenet_dali.dali_train_loader if kind == "dali" else imagenet_train_loader
            batches = make(root, batch, seed=0, short_side=s["short_side"], crop=crop, workers=len(cores),
                           device=device, channels_last=True)  # what ImageNetTask.train_batch gets
            threads, readers = imagenet_dali.dali_split(len(cores))
            note = (f"DALI, {threads} threads + {readers} readers" if kind == "dali" else
                    f"PIL, {len(cores)} workers")
            timed(batches, f"JPEG via {kind}", note)

        rows.guarded(model_name, "tensors on GPU", on_device)
        from resnet.data.imagenet.dali import dali_available

        if dali_available():
            rows.guarded(model_name, "JPEG via dali", lambda: loader("dali"))
        else:
            rows.add(model=model_name, path="JPEG via dali", note="skipped: NVIDIA DALI not installed "
                     "(bash scripts/install.sh --dali)")
        rows.guarded(model_name, "JPEG via pil", lambda: loader("pil"))


# ----------------------------------------------------------------------------- packing

def pack_worker(args) -> None:
    """One of k concurrent trainings: warm up, say ready, wait for the common start, count images."""
    s, device = sizes(args), torch.device(args.device)
    images, labels, _ = common.cifar_train_arrays(None, size=s["cifar_images"], seed=args.pack_index)
    cfg = common.bench_config("cifar-resnet-20", s["batch"], args.device, bf16=True, channels_last=True,
                              cuda_graphs=True)
    _, _, step = common.make_model_and_step(cfg, device)
    batches = common.project_batches(images, labels, s["batch"], device, True)
    for _ in range(s["graph_warmup"]):
        step(*next(batches))
    common.synchronize(device)
    go = Path(args.pack_dir) / "go"
    (Path(args.pack_dir) / f"ready-{args.pack_index}").touch()
    while not go.exists():
        time.sleep(0.02)
    start = float(go.read_text())
    while time.time() < start:
        time.sleep(0.001)
    done, began = 0, time.perf_counter()
    while time.time() < start + s["pack_seconds"]:
        for _ in range(5):
            step(*next(batches))
        done += 5
        common.synchronize(device)
    elapsed = time.perf_counter() - began
    (Path(args.pack_dir) / f"done-{args.pack_index}").write_text(json.dumps(
        {"images_per_s": done * s["batch"] / elapsed,
         "peak_gb": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None}))


def section_packing(args, rows: Rows) -> None:
    s = sizes(args)
    for k in s["pack_counts"]:
        def measure(k=k):
            with tempfile.TemporaryDirectory(prefix=f"bench-pack{k}-") as folder:
                command = [sys.executable, __file__, "--pack-worker", "--pack-dir", folder, "--device", args.device]
                command += ["--quick"] if args.quick else []
                workers = [subprocess.Popen(command + ["--pack-index", str(i)]) for i in range(k)]
                try:
                    started = time.perf_counter()
                    while sum(1 for _ in Path(folder).glob("ready-*")) < k:
                        if any(w.poll() not in (None, 0) for w in workers):
                            raise RuntimeError("a packing worker failed")
                        time.sleep(0.05)
                    ready_s = time.perf_counter() - started
                    (Path(folder) / "go").write_text(str(time.time() + 0.5))
                    for worker in workers:
                        worker.wait()
                finally:
                    for worker in workers:
                        if worker.poll() is None:
                            worker.kill()
                results = [json.loads(p.read_text()) for p in Path(folder).glob("done-*")]
                if len(results) != k:
                    raise RuntimeError(f"{k - len(results)} of {k} packing workers reported nothing")
                peak = max((r["peak_gb"] or 0) for r in results) or None
                rows.add(model="cifar-resnet-20", path=f"packing k={k}", batch=s["batch"],
                         images_per_s=sum(r["images_per_s"] for r in results), first_steps_s=ready_s, peak_gb=peak,
                         note=f"total of {k} processes; per process {sum(r['images_per_s'] for r in results) / k:,.0f}")
        rows.guarded("cifar-resnet-20", f"packing k={k}", measure)


# ----------------------------------------------------------------------------- the run and the table

def run_section(name: str, args, rows_file: Path, budget: float) -> None:
    """One section in its own process group, stopped at its budget."""
    command = [sys.executable, __file__, "--section", name, "--rows", str(rows_file), "--device", args.device,
               "--baseline-workers", str(args.baseline_workers), "--imagenet-cores", str(args.imagenet_cores),
               "--seconds", str(args.seconds)]
    command += ["--cifar", args.cifar] if args.cifar else []
    command += ["--compile-depths", *map(str, args.compile_depths)]
    command += [flag for flag, on in (("--quick", args.quick), ("--r1202-eager", args.r1202_eager),
                                      ("--imagenet-graphs", args.imagenet_graphs),
                                      ("--imagenet-compile", args.imagenet_compile)) if on]
    print(f"== {name} (budget {budget:.0f} s)", flush=True)
    started = time.perf_counter()
    process = subprocess.Popen(command, start_new_session=True)
    try:
        code = process.wait(timeout=budget)
        if code != 0:
            Rows(rows_file, name).add(model="-", path="-", note=f"section process exited with {code}")
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        Rows(rows_file, name).add(model="-", path="-", note=f"stopped at its {budget:.0f} s budget; rows above are complete")
    print(f"== {name}: {time.perf_counter() - started:.0f} s", flush=True)


def table(rows: list[dict]) -> str:
    baseline = {(r["model"], r["batch"]): r["images_per_s"] for r in rows
                if r.get("path") == "a baseline" and r.get("images_per_s")}
    body = []
    for r in rows:
        ips = r.get("images_per_s")
        key = (r.get("model"), r.get("batch"))
        ratio = f"{ips / baseline[key]:.2f}x" if ips and key in baseline else "-"
        body.append([r["section"], r.get("model", "-"), r.get("path", "-"), str(r.get("batch", "-")), fmt(ips), ratio,
                     fmt(r.get("first_steps_s"), ".1f"), fmt(r.get("setup_s"), ".1f"), fmt(r.get("peak_gb"), ".2f"),
                     r.get("note", "")])
    return common.markdown_table(["section", "model", "path", "batch", "images/s", "vs baseline", "first steps s",
                                  "setup s", "peak GiB", "note"], body)


def throughput_csv(rows: list[dict], device: str, file: Path) -> None:
    """The rate each model trains at on the project's training path (input of `resnet cost`)."""
    best: dict[str, float] = {}
    for r in rows:
        path = r.get("path", "")
        if r.get("images_per_s") and (path.startswith("c project graph") or
                                      (path.startswith("b project eager") and r["model"] not in best)):
            best[r["model"]] = r["images_per_s"]
    with open(file, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["model", "device", "images_per_s"])
        for model, ips in best.items():
            writer.writerow([model, device, f"{ips:.1f}"])


def header(args) -> str:
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    return (f"device {name}; torch {torch.__version__}; {os.cpu_count()} CPU cores; "
            f"{'quick sizes' if args.quick else 'full sizes'}; {time.strftime('%Y-%m-%d %H:%M')}")


def orchestrate(args) -> int:
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA GPU visible; use --device cpu (with --quick) to check the script", file=sys.stderr)
        return 2
    common.BENCH_DATA.mkdir(exist_ok=True)
    names = args.only or list(SECTIONS)
    unknown = sorted(set(names) - set(SECTIONS))
    if unknown:
        print(f"error: unknown section(s) {unknown}; known: {list(SECTIONS)}", file=sys.stderr)
        return 2
    deadline = time.perf_counter() + (args.budget or (QUICK_BUDGET * len(names) if args.quick else 345.0))
    with tempfile.TemporaryDirectory(prefix="bench-rows-") as folder:
        rows_file = Path(folder) / "rows.jsonl"
        rows_file.touch()
        for name in names:
            left = deadline - time.perf_counter()
            budget = min(QUICK_BUDGET if args.quick else SECTIONS[name], left)
            if budget < 10:
                Rows(rows_file, name).add(model="-", path="-", note="skipped: the run's time budget is spent")
                continue
            run_section(name, args, rows_file, budget)
        rows = [json.loads(line) for line in rows_file.read_text().splitlines() if line.strip()]
    text = f"{header(args)}\n\n{table(rows)}\n"
    out = os.environ.get("OUT")
    for folder in filter(None, [out, args.results]):
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / "gpu_results.md").write_text(text)
        throughput_csv(rows, torch.device(args.device).type, Path(folder) / "throughput.csv")
    print("\n" + text, flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu (with --quick)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks every code path in a minute or two")
    parser.add_argument("--only", nargs="+", help=f"sections to run, of {list(SECTIONS)}")
    parser.add_argument("--budget", type=float, help="seconds for the whole run (default 345; --quick: 120 a section)")
    parser.add_argument("--seconds", type=float, default=3.0, help="timed seconds per measurement (full size)")
    parser.add_argument("--cifar", help="CIFAR-10 for the real-data check (default .bench-data/ or ../shared/data)")
    parser.add_argument("--baseline-workers", type=int, default=4, help="baseline DataLoader workers (akamaster: 4)")
    parser.add_argument("--imagenet-cores", type=int, default=8,
                        help="CPU cores the ImageNet sections are pinned to, and the loaders' workers (default 8)")
    parser.add_argument("--imagenet-graphs", action="store_true", help="ImageNet step as a CUDA graph")
    parser.add_argument("--imagenet-compile", action="store_true", help="ImageNet step with engine.compile")
    parser.add_argument("--r1202-eager", action="store_true", help="ResNet-1202 without the CUDA graph")
    parser.add_argument("--compile-depths", type=int, nargs="*", default=[20],
                        help="CIFAR depths also timed with engine.compile (path d; compiling takes a while)")
    parser.add_argument("--results", help="also write gpu_results.md and throughput.csv into this folder")
    parser.add_argument("--section", help=argparse.SUPPRESS)
    parser.add_argument("--rows", help=argparse.SUPPRESS)
    parser.add_argument("--pack-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--pack-dir", help=argparse.SUPPRESS)
    parser.add_argument("--pack-index", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS (graph-check)
    if args.pack_worker:
        pack_worker(args)
        return 0
    if not args.section:
        return orchestrate(args)
    rows = Rows(Path(args.rows), args.section)
    if args.section.startswith("cifar-"):
        section_cifar(int(args.section.split("-")[1]), args, rows)
    elif args.section.startswith("imagenet-"):
        section_imagenet(int(args.section.split("-")[1]), args, rows)
    else:
        {"r1202": section_r1202, "realdata": section_realdata,
         "packing": section_packing, "graph-check": section_graph_check}[args.section](args, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
