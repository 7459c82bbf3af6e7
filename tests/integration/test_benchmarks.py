"""Plan cost (resnet.cost, `python -m resnet cost`) and the GPU benchmark script's CPU mode."""
from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from resnet.config.load import load_config
from resnet.cost import format_cost, plan_cost
from tests.support import REPO_ROOT



def two_cell_config(scale: str = "smoke"):
    """The config at ``scale`` with a plan of two small CIFAR cells."""
    config = yaml.safe_load((REPO_ROOT / "config.yaml").read_text())
    config["scale"] = scale
    config["engine"]["device"] = "cpu"
    config["plan"].update(cifar10=True, imagenet=False, cifar_plain_depths=[], cifar_resnet_depths=[20, 32],
                          cifar_seeds=[0])
    return load_config(config)


def test_measured_cost_is_positive_and_totals():
    config = two_cell_config()
    costs, device = plan_cost(config, measure_iterations=1)
    assert device.type == "cpu"
    assert [c.cell for c in costs] == ["cifar-resnet-20/seed-0", "cifar-resnet-32/seed-0"]
    assert all(c.hours > 0 and c.source == "measured" for c in costs)
    text = format_cost(config, costs, device)
    total = float(text.splitlines()[len(costs) + 1].split()[1])
    assert total == pytest.approx(sum(c.hours for c in costs), abs=1e-3)


def test_throughput_csv_gives_exact_hours(tmp_path):
    config = two_cell_config("paper")
    rates = tmp_path / "throughput.csv"
    rates.write_text("model,device,images_per_s\ncifar-resnet-20,cpu,1024\ncifar-resnet-32,cpu,2048\n"
                     "cifar-resnet-20,cuda,99999\n")
    costs, _ = plan_cost(config, throughput=rates, measure_iterations=0)
    # Counted by hand from the paper's recipe (Sec. 4.2): 64,000 iterations of 128 images are
    # 8,192,000 images; at 1,024 images/s that is 8,000 s, at 2,048 images/s 4,000 s.
    assert [c.hours for c in costs] == pytest.approx([8000 / 3600, 4000 / 3600], rel=1e-12)
    assert {c.source for c in costs} == {str(rates)}


def test_cost_command_line(tmp_path):
    rates = tmp_path / "rates.csv"
    rates.write_text("model,device,images_per_s\n" + "".join(
        f"{m},cpu,100\n" for m in ["cifar-plain-20", "cifar-plain-32", "cifar-plain-44", "cifar-plain-56",
                                   "cifar-resnet-20", "cifar-resnet-32", "cifar-resnet-44", "cifar-resnet-56",
                                   "cifar-resnet-110", "cifar-resnet-1202", "plain-18", "plain-34", "resnet-18",
                                   "resnet-34", "resnet-34-b", "resnet-34-c", "resnet-50", "resnet-101",
                                   "resnet-152"]))
    config = tmp_path / "config.yaml"
    config.write_text((REPO_ROOT / "config.yaml").read_text().replace("device: auto", "device: cpu"))
    done = subprocess.run([sys.executable, "-m", "resnet", "cost", "--config", str(config), "--throughput", str(rates),
                           "--measure-iterations", "0"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "total" in done.stdout and str(rates) in done.stdout


def test_cost_without_rate_and_without_measuring_is_bad_input(tmp_path):
    from resnet.config.schema import ConfigError

    rates = tmp_path / "empty.csv"
    rates.write_text("model,device,images_per_s\n")
    with pytest.raises(ConfigError, match="no rate"):
        plan_cost(two_cell_config(), throughput=rates, measure_iterations=0)


@pytest.mark.slow
def test_gpu_script_cifar_section_runs_on_cpu(tmp_path):
    """benchmarks/gpu.py --quick --device cpu: the graph check and the CIFAR section (a minute on 2 cores).

    On the CPU the graph check meets the step's fallback (no CUDA: the capture fails, training goes
    on eagerly): no graph ran, so the row says that it checked nothing, not that the two agree.
    """
    done = subprocess.run([sys.executable, "benchmarks/gpu.py", "--quick", "--device", "cpu", "--only",
                           "graph-check", "cifar-20", "--results", str(tmp_path)], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    table = (tmp_path / "gpu_results.md").read_text()
    for path in ("a baseline", "b project eager", "c project graph", "d project graph+compile"):
        assert f"| {path} " in table
    assert "setup s" in table and "ran eager+compile" in table
    checks = [line for line in table.splitlines() if "check graph == eager" in line]
    assert len(checks) == 2 and all("NOT CHECKED (no graph replayed)" in line and "capture failed" in line
                                    and "0 replays" in line and "IDENTICAL" not in line for line in checks)
    assert "| failed: " not in table  # no measurement raised
    assert (tmp_path / "throughput.csv").read_text().startswith("model,device,images_per_s")


def test_cpu_imagenet_transform_benchmark_times_every_path():
    """benchmarks/cpu_imagenet_transform.py on 8 JPEGs: PIL, resize-then-crop, DALI's CPU backend
    and the decode floor, one table, with the crops' differences from PIL's."""
    from resnet.data.imagenet.dali import dali_available

    done = subprocess.run([sys.executable, "benchmarks/cpu_imagenet_transform.py", "--images", "8", "--rounds", "1"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {line.split("|")[1].strip(): line.split("|") for line in done.stdout.splitlines() if line.startswith("| ")}
    expected = {"whole-resize", "pil", "decode"} | ({"dali-cpu"} if dali_available() else set())
    assert expected <= set(rows)
    assert float(rows["pil"][3]) > 0 and rows["pil"][5].strip() == "1.00x"
    for name in expected - {"pil", "decode"}:
        assert 0 <= int(rows[name][6]) <= 3  # same draws: only rounding (and DALI's image-border filter) differs


def test_gpu_script_imagenet_section_runs_on_cpu(tmp_path):
    """benchmarks/gpu.py --quick --device cpu --only imagenet-18: the section pinned to its cores,
    the on-device rate, then the DALI loader (its CPU backend here) and the PIL loader, with the
    cores busy reported."""
    from resnet.data.imagenet.dali import dali_available

    done = subprocess.run([sys.executable, "benchmarks/gpu.py", "--quick", "--device", "cpu", "--only", "imagenet-18",
                           "--imagenet-cores", "2", "--results", str(tmp_path)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    table = (tmp_path / "gpu_results.md").read_text()
    rows = {line.split("|")[3].strip(): line for line in table.splitlines() if line.startswith("| imagenet-18")}
    paths = ["b project eager, tensors on GPU", "b project eager, JPEG via pil"]
    paths += ["b project eager, JPEG via dali"] if dali_available() else []
    for path in paths:
        assert float(rows[path].split("|")[5].replace(",", "")) > 0, rows[path]
        assert "of on-GPU rate" in rows[path] and "of 2 cores busy" in rows[path]
