"""The data: CIFAR-10 and ImageNet, every random draw a pure function of (seed, stream, counter).

    errors.py     DataError: bad data, in one line naming the path and the fix
    seeds.py      derive_seed, the stream tags, the per-epoch orders
    cifar/        CIFAR-10 sources (three formats, checked complete, decoded once) and the stream
    imagenet/     ImageNet folders, the paper's crops, the sampler, the PIL and DALI loaders, testing
"""
