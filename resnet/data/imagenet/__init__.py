"""ImageNet (Sec. 3.4): from class folders to the net's input, for training and for testing.

    listing.py     the class-folder layout, listed once per job: samples, counts, the digest (data identity)
    folders.py     data.imagenet to the job's checked listing; images opened as RGB
    devkit.py      the ILSVRC2012 devkit: the classes, the validation ground truth
    prepare.py     the three ILSVRC2012 archives to class folders (once, resumable, checked)
    synthetic.py   a small synthetic set in the same layout (tests, smoke scale)
    crops.py       the paper's crops: scale augmentation, flip, colour noise, the centre crop
    sampler.py     which sample each process reads at each global position (resumable, DDP-aware)
    pil.py         the PIL loader (DataLoader workers)
    dali.py        the DALI loader (decoding and cropping on the GPU; its CPU backend in the tests)
    evaluation.py  centre-crop validation (Figure 4) and 10-crop testing (Tables 2 and 3)
    loaders.py     data.imagenet_loader: which of the two loaders a job uses
"""
