"""Training one cell, in one process or several (torchrun), and stopping and resuming it.

    loop.py         train(): set-up, the loop, checkpoints, evaluation rows, the end
    interval.py     a log interval's running sums and the curve row they make
    schedule.py     the learning rate at each iteration, the warm-up of the deepest CIFAR nets
    step.py         one SGD step, eager or as one CUDA graph
    tasks.py        what differs between CIFAR-10 and ImageNet: data, evaluation, final numbers
    stops.py        signals, Interrupted / GaveUp / Diverged
    outcome.py      metrics.json of a done or failed cell, and its MLflow run
    distributed.py  the processes of one cell (rank, world size, collectives)
    device.py       the device a process trains on
    launch.py       the relaunch under torchrun, one process per GPU
"""
