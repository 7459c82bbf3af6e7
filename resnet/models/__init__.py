"""The networks of the paper and what is measured on them.

    nets.py       plain and residual nets (CIFAR and ImageNet, shortcuts A/B/C) built from a name
    ghost_bn.py   batch norm over groups of the batch (the paper's 2 GPUs x 64 on one device)
    measure.py    parameters, multiply-adds (Table 1), layer responses (Figure 7)
"""
