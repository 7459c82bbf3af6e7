"""`snakemake --report report.html` after the local smoke run (fixture smoke_results_local): the report
builds, embeds every table, figure and per-cell curve under its category with a caption that names
the scale, its front page gives the scale and the summary, and headless Chromium renders it.

The report is one self-contained HTML page (a React app; its results are data URIs in a `results`
object). To see the figures drawn, a copy of the page gets a probe script that decodes every embedded
PNG in the browser and opens the "Paper figures" category, then writes what it found into the DOM,
which `chromium --dump-dom` returns; a screenshot of the page with Figure 6 on view must be an image.
"""
from __future__ import annotations

import base64
import html
import json
import re
import struct
import time

import pytest

from tests.support.mlflow_ui import chromium_dump_dom, chromium_screenshot
from tests.support.workflow import run_folders, run_snakemake

pytest_plugins = ["tests.support.workflow"]

pytestmark = pytest.mark.slow

TABLES = ["table1", "table2", "table3", "table6"]
FIGURES = ["figure1", "figure4", "figure6", "figure7"]

PROBE = """
<script>
window.addEventListener("load", () => {
  const images = {};
  for (const [path, entry] of Object.entries(results)) {
    if (entry.mime_type !== "image/png") continue;
    images[path] = new Image();
    images[path].src = entry.data_uri;
  }
  setTimeout(() => {
    const decoded = {};
    for (const [path, image] of Object.entries(images)) decoded[path] = [image.naturalWidth, image.naturalHeight];
    const probe = document.createElement("pre");
    probe.id = "probe";
    probe.textContent = JSON.stringify(decoded);
    document.body.appendChild(probe);
    app.showCategory("Paper figures");
    app.setView({content: "img", contentPath: results[SHOW].data_uri, resultPath: SHOW});
  }, 2000);
});
</script>
"""


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])  # IHDR width, height


@pytest.fixture(scope="module")
def report(smoke_results_local):
    repo = smoke_results_local
    t0 = time.monotonic()
    proc = run_snakemake(repo, "--report", "report.html", "--configfile", "test-overrides.yaml",
                         timeout=600, log_name="snakemake-report.log")
    print(f"\nsnakemake --report: exit {proc.returncode} after {time.monotonic() - t0:.0f} s")
    assert proc.returncode == 0, proc.stdout[-5000:]
    page = (repo / "report.html").read_text()
    match = re.search(r"var results = (\{.*?\});\n", page, re.S)
    assert match, "no results object in the report"
    return {"repo": repo, "page": page, "results": json.loads(match.group(1))}


def embedded(entry: dict) -> bytes:
    return base64.b64decode(entry["data_uri"].split("base64,", 1)[1])


def test_tables_figures_and_curves_are_embedded_by_category(report):
    repo, results = report["repo"], report["results"]
    for name in TABLES:
        entry = results[f"results/{name}.csv"]
        assert embedded(entry) == (repo / f"results/{name}.csv").read_bytes()
    for name in FIGURES:
        entry = results[f"results/{name}.png"]
        assert entry["mime_type"] == "image/png"
        assert embedded(entry) == (repo / f"results/{name}.png").read_bytes()
    curves = {path for path in results if path.startswith("results/curves/smoke/")}
    assert curves == {f"results/curves/smoke/{cell}.png" for cell in run_folders(repo)}
    for path in curves:
        assert embedded(results[path]) == (repo / path).read_bytes()
    categories = re.search(r"var categories = (\{.*?\});\n", report["page"], re.S).group(1)
    for category in ("Paper tables", "Paper figures", "Per-cell curves"):
        assert category in json.loads(categories), categories[:500]


def test_captions_say_what_and_at_which_scale(report):
    results = report["results"]
    table6 = results["results/table6.csv"]["caption"]
    assert "Table 6" in table6 and "CIFAR-10 test error" in table6 and "smoke" in table6
    assert "cifar-resnet-20" in table6  # the table itself, rendered from the CSV in the caption
    figure6 = results["results/figure6.png"]["caption"]
    assert "Figure 6" in figure6 and "CIFAR-10 training error" in figure6 and "scale" in figure6 and "smoke" in figure6
    curve = results["results/curves/smoke/cifar-resnet-20/seed-0.png"]["caption"]
    assert "cifar-resnet-20/seed-0" in curve and "smoke" in curve


def test_front_page_gives_the_scale_and_the_summary(report):
    description = json.loads(re.search(r"var workflow_desc = (\".*?\");\n", report["page"], re.S).group(1))
    text = html.unescape(re.sub(r"<[^>]+>", " ", description))
    assert "reproduced at scale smoke" in " ".join(text.split())
    summary = (report["repo"] / "results/README.md").read_text()
    cells_line = next(line for line in summary.splitlines() if " planned: " in line)  # "N planned: D done, F failed, ..."
    assert " ".join(cells_line.split()) in " ".join(text.split())


def test_chromium_draws_every_figure_of_the_report(report, tmp_path):
    repo, results = report["repo"], report["results"]
    probe = tmp_path / "report-probe.html"
    head, _, tail = report["page"].rpartition("</body>")  # the page's own end (scripts hold the word too)
    probe.write_text(head + PROBE.replace("SHOW", json.dumps("results/figure6.png")) + "</body>" + tail)
    dom = chromium_dump_dom(probe.as_uri(), timeout=240)
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert found, dom[-3000:]
    decoded = json.loads(html.unescape(found.group(1)))
    images = [f"results/{name}.png" for name in FIGURES] + sorted(
        path for path in results if path.startswith("results/curves/"))
    for path in images:
        assert decoded.get(path) == list(png_size((repo / path).read_bytes())), (path, decoded.get(path))
    # the figures category is on view: every figure listed by name, and the front page's description
    for name in FIGURES:
        assert f"{name}.png" in dom
    assert "Per-cell curves" in dom and "Paper tables" in dom
    shot = chromium_screenshot(probe.as_uri(), tmp_path / "figure6.png", timeout=240)
    width, height = png_size(shot.read_bytes())
    assert (width, height) == (1400, 900) and shot.stat().st_size > 20_000
