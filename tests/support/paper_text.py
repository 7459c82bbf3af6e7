"""The paper's numbers as ../shared/PAPER.md writes them: a source for the tests that is not
resnet/paper, so that a table's paper column is checked against the paper's text rather than
against the constant it was built from.

    paper_text().table1_multiply_adds[50] == 3.8      # Table 1, x10^9
    paper_text().table1_blocks[101] == (3, 4, 23, 3)  # conv2_x .. conv5_x
    paper_text().table2["plain-18"] == 27.94          # top-1 %, 10-crop
    paper_text().table3[152] == (21.43, 5.71)         # ResNet-152: top-1 / top-5 %
    paper_text().table6[56] == (0.85, 6.97)           # ResNet-56: params (M), test error %
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from tests.support import SHARED, skip_or_fail

PAPER_MD = SHARED / "PAPER.md"


@dataclass(frozen=True)
class PaperText:
    table1_multiply_adds: dict[int, float]
    table1_blocks: dict[int, tuple[int, ...]]
    table2: dict[str, float]
    table3: dict[int, tuple[float, float]]
    table6: dict[int, tuple[float, float]]
    table6_quoted: dict[str, float]


def _paragraph(text: str, opening: str) -> str:
    """The paragraph of PAPER.md that starts with ``opening``, on one line."""
    start = text.index(opening)
    end = text.find("\n\n", start)
    return " ".join(text[start:end if end >= 0 else None].split())


@functools.cache
def paper_text() -> PaperText:
    """PAPER.md's numbers (skips, or fails under CI=true, where ../shared/PAPER.md is missing)."""
    if not PAPER_MD.is_file():
        skip_or_fail(f"the paper's numbers are not at {PAPER_MD} (../shared next to the repository)")
    text = PAPER_MD.read_text()
    table1 = _paragraph(text, "Table 1 FLOPs")
    flops = table1[:table1.index("(VGG")]
    table2 = _paragraph(text, "Table 2 (")
    table3 = _paragraph(text, "Table 3 (")
    table6 = _paragraph(text, "Table 6 (")
    ours, quoted = table6.split("Quoted rows:")
    return PaperText(
        table1_multiply_adds={int(depth): float(value) for depth, value in re.findall(r"(\d+): (\d+(?:\.\d+)?)", flops)},
        table1_blocks={int(depth): tuple(int(n) for n in blocks.split(","))
                       for depth, blocks in re.findall(r"(\d+) \{([\d,]+)\}", table1)},
        table2={name.lower(): float(value)
                for name, value in re.findall(r"((?:plain|ResNet)-\d+) (\d+(?:\.\d+)?)", table2.split(":", 1)[1])},
        table3={int(depth): (float(top1), float(top5))
                for depth, top1, top5 in re.findall(r"ResNet-(\d+) (\d+(?:\.\d+)?)/(\d+(?:\.\d+)?)", table3)},
        table6={int(depth): (float(params), float(error))
                for depth, params, error in re.findall(r"(\d+) (\d+(?:\.\d+)?)M (\d+(?:\.\d+)?)", ours)},
        table6_quoted={name: float(error) for name, error in re.findall(r"(Maxout|NIN|DSN) (\d+(?:\.\d+)?)", quoted)},
    )
