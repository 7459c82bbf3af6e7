"""CIFAR-10 (Sec. 4.2).

    source.py   a torchvision folder, an ImageFolder tree or a tarball of one; checked complete;
                decoded once into a cache; its content hash
    stream.py   the train/validation split, the per-pixel mean, the augmented training stream on the
                device, the evaluation sets
"""
