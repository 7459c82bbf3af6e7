"""The paper's tables and figures, rebuilt from the run folders, each number beside the paper's.

    cells.py     what each planned cell's files say (done, failed, not run; numbers; curve)
    tables.py    Tables 1, 2, 3, 6 as CSV and Markdown
    figures.py   Figures 1, 4, 6, 7 as PNG and PDF
    curves.py    one curve per cell (the per-cell pages of `snakemake --report`)
    summary.py   results/README.md
"""
