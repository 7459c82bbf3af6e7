"""The paper's numbers, in one place, each with its table and row.

Source: He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition", CVPR 2016
(arXiv 1512.03385), cited below as "He et al. 2015".

Shape of the data
-----------------
Every table is a ``ModelTable``: an ordered ``dict`` from a row key to a frozen dataclass row,
in the paper's row order.

* Rows the project trains are keyed by the registry's canonical model name
  (``resnet.names.canonical_name``): ``"resnet-34"`` is option A, ``"resnet-34-b"``,
  ``"resnet-50"`` is option B, ``"cifar-resnet-56"`` is option A.  Lookups accept any spelling
  of the same model, so ``TABLE2["resnet-34-a"] is TABLE2["resnet-34"]``.
* Rows the paper quotes from other work (VGG-16, Maxout, ...) are keyed by the paper's label
  and have ``quoted=True``; no cell trains them.

Errors are in percent, parameter counts are plain integers (``params`` in Table 6 is the
paper's rounded figure in millions), multiply-adds are in units of 1e9.

``FIGURES`` maps a figure to its panels and each panel to the models it draws;
``trained_cells()`` is every model some table or figure needs trained.
"""

from __future__ import annotations

from dataclasses import dataclass

from resnet.paper.names import ModelNameError, canonical_name, parse_model_name

PAPER = "He et al. 2015, Deep Residual Learning for Image Recognition (arXiv 1512.03385)"


class ModelTable(dict):
    """A dict of paper rows whose lookups accept any spelling of a registry model name."""

    def _canonical(self, key):
        try:
            return canonical_name(key)
        except (ModelNameError, TypeError):
            return key

    def __missing__(self, key):
        canonical = self._canonical(key)
        if canonical != key and dict.__contains__(self, canonical):
            return dict.__getitem__(self, canonical)
        raise KeyError(key)

    def __contains__(self, key):
        return dict.__contains__(self, key) or dict.__contains__(self, self._canonical(key))

    def get(self, key, default=None):
        return self[key] if key in self else default


# --------------------------------------------------------------------------------------------
# Table 1: ImageNet architectures.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArchitectureRow:
    layers: int
    block: str  # "basic" (two 3x3) or "bottleneck" (1x1, 3x3, 1x1 with x4 expansion)
    blocks_per_stage: tuple[int, ...]  # conv2_x, conv3_x, conv4_x, conv5_x
    multiply_adds_e9: float  # the paper's "FLOPs" column, multiply-adds x 1e9


# He et al. 2015, Table 1 (columns 18-layer .. 152-layer; rows conv2_x..conv5_x and FLOPs).
TABLE1 = ModelTable({
    "resnet-18": ArchitectureRow(18, "basic", (2, 2, 2, 2), 1.8),
    "resnet-34": ArchitectureRow(34, "basic", (3, 4, 6, 3), 3.6),
    "resnet-50": ArchitectureRow(50, "bottleneck", (3, 4, 6, 3), 3.8),
    "resnet-101": ArchitectureRow(101, "bottleneck", (3, 4, 23, 3), 7.6),
    "resnet-152": ArchitectureRow(152, "bottleneck", (3, 8, 36, 3), 11.3),
})
# He et al. 2015, Sec. 3.3 / Figure 3: VGG-19 for comparison, multiply-adds x 1e9.
VGG19_MULTIPLY_ADDS_E9 = 19.6


# --------------------------------------------------------------------------------------------
# Tables 2 and 3: ImageNet validation error, 10-crop testing.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageNetError:
    top1: float | None  # % top-1 error, 10-crop; None where the paper gives "-"
    top5: float | None = None  # % top-5 error, 10-crop; None where the table has no column
    quoted: bool = False  # True: another paper's result, quoted, not trained here


# He et al. 2015, Table 2 (top-1 error, 10-crop); its ResNets use option A (zero-padding).
TABLE2 = ModelTable({
    "plain-18": ImageNetError(27.94),
    "plain-34": ImageNetError(28.54),
    "resnet-18": ImageNetError(27.88),  # option A
    "resnet-34": ImageNetError(25.03),  # option A
})

# He et al. 2015, Table 3 (top-1 / top-5 error, 10-crop).
TABLE3 = ModelTable({
    "VGG-16": ImageNetError(28.07, 9.33, quoted=True),
    "GoogLeNet": ImageNetError(None, 9.15, quoted=True),
    "PReLU-net": ImageNetError(24.27, 7.38, quoted=True),
    "plain-34": ImageNetError(28.54, 10.02),
    "resnet-34": ImageNetError(25.03, 7.76),  # "ResNet-34 A"
    "resnet-34-b": ImageNetError(24.52, 7.46),  # "ResNet-34 B"
    "resnet-34-c": ImageNetError(24.19, 7.40),  # "ResNet-34 C"
    "resnet-50": ImageNetError(22.85, 6.71),  # option B
    "resnet-101": ImageNetError(21.75, 6.05),  # option B
    "resnet-152": ImageNetError(21.43, 5.71),  # option B
})


# --------------------------------------------------------------------------------------------
# Table 6: CIFAR-10 test error.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CifarError:
    error: float  # % test error; for ResNet-110 the best of 5 runs
    params_millions: float | None  # the paper's rounded "# params" column; None where not given
    layers: int | None = None  # the "# layers" column
    mean: float | None = None  # mean over runs, where the paper gives "(mean ± std)"
    std: float | None = None
    runs: int = 1  # how many runs "best" and "mean ± std" are over
    quoted: bool = False  # True: another paper's result, quoted, not trained here


# He et al. 2015, Table 6 (CIFAR-10 test error %, option A shortcuts).
TABLE6 = ModelTable({
    "Maxout": CifarError(9.38, None, quoted=True),
    "NIN": CifarError(8.81, None, quoted=True),
    "DSN": CifarError(8.22, None, quoted=True),
    "FitNet": CifarError(8.39, 2.5, layers=19, quoted=True),
    "Highway-19": CifarError(7.54, 2.3, layers=19, mean=7.72, std=0.16, quoted=True),
    "Highway-32": CifarError(8.80, 1.25, layers=32, quoted=True),
    "cifar-resnet-20": CifarError(8.75, 0.27, layers=20),
    "cifar-resnet-32": CifarError(7.51, 0.46, layers=32),
    "cifar-resnet-44": CifarError(7.17, 0.66, layers=44),
    "cifar-resnet-56": CifarError(6.97, 0.85, layers=56),
    # "6.43 (6.61±0.16)": best of 5 runs, then mean ± std of the 5 (He et al. 2015, Table 6).
    "cifar-resnet-110": CifarError(6.43, 1.7, layers=110, mean=6.61, std=0.16, runs=5),
    "cifar-resnet-1202": CifarError(7.93, 19.4, layers=1202),
})
# He et al. 2015, Sec. 4.2: ResNet-110 is run 5 times and reported as "best (mean±std)".
RESNET110_RUNS = 5


# --------------------------------------------------------------------------------------------
# Exact parameter counts (checked by the tests against the built models).
# --------------------------------------------------------------------------------------------

# Option A CIFAR nets; Table 6 rounds these to 0.27M .. 19.4M (He et al. 2015, Table 6).
CIFAR_OPTION_A_PARAMETERS = ModelTable({
    "cifar-resnet-20": 269_722,
    "cifar-resnet-32": 464_154,
    "cifar-resnet-44": 658_586,
    "cifar-resnet-56": 853_018,
    "cifar-resnet-110": 1_727_962,
    "cifar-resnet-1202": 19_421_274,
})

# Option B ImageNet nets with 1000 classes. These are torchvision's counts (its V1.5 bottleneck
# moves a stride, not a weight, so the paper's V1 has the same counts).
TORCHVISION_OPTION_B_PARAMETERS = ModelTable({
    "resnet-18-b": 11_689_512,
    "resnet-34-b": 21_797_672,
    "resnet-50": 25_557_032,
    "resnet-101": 44_549_160,
    "resnet-152": 60_192_808,
})


# --------------------------------------------------------------------------------------------
# Figures: which models each panel draws.
# --------------------------------------------------------------------------------------------

CIFAR_PLAIN = ("cifar-plain-20", "cifar-plain-32", "cifar-plain-44", "cifar-plain-56")
CIFAR_RESNET = ("cifar-resnet-20", "cifar-resnet-32", "cifar-resnet-44", "cifar-resnet-56",
                "cifar-resnet-110")

FIGURES: dict[str, dict[str, tuple[str, ...]]] = {
    # He et al. 2015, Figure 1: 20- and 56-layer plain nets; left training error, right test error.
    "figure-1": {
        "left": ("cifar-plain-20", "cifar-plain-56"),
        "right": ("cifar-plain-20", "cifar-plain-56"),
    },
    # He et al. 2015, Figure 4: thin = training error, bold = centre-crop validation error.
    "figure-4": {
        "left": ("plain-18", "plain-34"),
        "right": ("resnet-18", "resnet-34"),  # option A
    },
    # He et al. 2015, Figure 6: dashed = training error, bold = test error.
    "figure-6": {
        "left": CIFAR_PLAIN,
        "middle": CIFAR_RESNET,
        "right": ("cifar-resnet-110", "cifar-resnet-1202"),
    },
    # He et al. 2015, Figure 7: std of each 3x3 layer's response; top in layer order,
    # bottom sorted in descending order.
    "figure-7": {
        "top": ("cifar-plain-20", "cifar-plain-56", "cifar-resnet-20", "cifar-resnet-56",
                "cifar-resnet-110"),
        "bottom": ("cifar-plain-20", "cifar-plain-56", "cifar-resnet-20", "cifar-resnet-56",
                   "cifar-resnet-110"),
    },
}


def figure_models(figure: str) -> tuple[str, ...]:
    """Every model a figure draws, each once, in first-appearance order."""
    return tuple(dict.fromkeys(m for panel in FIGURES[figure].values() for m in panel))


def trained_cells() -> tuple[str, ...]:
    """Every model some table or figure needs trained (quoted rows excluded), each once.

    Table 1 needs no training (it is computed from the models); ResNet-110's extra runs
    (``RESNET110_RUNS``) are seeds of one cell, not separate names.
    """
    names = [k for table in (TABLE2, TABLE3, TABLE6) for k, row in table.items() if not row.quoted]
    names += [m for figure in FIGURES for m in figure_models(figure)]
    return tuple(dict.fromkeys(names))


@dataclass(frozen=True)
class Appearance:
    """Where the paper shows a model, and what it reports for it there."""

    artefact: str  # "Table 6", "Figure 6"
    key: str  # "table-6", "figure-6": as in FIGURES and the run tags
    paper: str  # the paper's number(s) for the model, or the figure's panels that draw it


def appearances(model: str) -> list[Appearance]:
    """Every table and figure of the paper that shows ``model`` (any spelling), in the paper's order.

    Table rows give the paper's numbers ("test error 6.97%"); figures give their panels.
    """
    found = []
    for number, table in (("2", TABLE2), ("3", TABLE3), ("6", TABLE6)):
        row = table.get(model)
        if row is None or row.quoted:
            continue
        if isinstance(row, CifarError):
            text = f"test error {row.error:.2f}%"
            if row.runs > 1:
                text += f", best of {row.runs} runs (mean {row.mean:.2f} ± {row.std:.2f})"
        elif row.top5 is None:
            text = f"top-1 error {row.top1:.2f}% (10-crop)"
        else:
            text = f"top-1 error {row.top1:.2f}%, top-5 error {row.top5:.2f}% (10-crop)"
        found.append(Appearance(f"Table {number}", f"table-{number}", text))
    canonical = ModelTable()._canonical(model)
    for figure, panels in FIGURES.items():
        drawn = [panel for panel, models in panels.items() if canonical in models]
        if drawn:
            found.append(Appearance(f"Figure {figure.split('-')[1]}", figure,
                                    f"{' and '.join(drawn)} panel{'s' if len(drawn) > 1 else ''}"))
    return found


def paper_label(model: str, table: str = "") -> str:
    """The paper's name of a registry model: 'ResNet-34 B', 'plain-18', 'ResNet-110'."""
    spec = parse_model_name(model)
    if spec.family == "plain":
        return f"plain-{spec.depth}"
    label = f"ResNet-{spec.depth}"
    if table == "table3" and spec.depth == 34:
        label += f" {spec.shortcut}"
    elif spec.shortcut != ("B" if spec.bottleneck else "A"):
        label += f" ({spec.shortcut})"
    return label + (" (V1.5)" if spec.variant == "v1.5" else "")
