"""What differs between CIFAR-10 and ImageNet training: data, evaluation, final numbers.

A task gives the training loop `train_batch(iteration)`, `evaluate(model)` (the curve's
validation / test columns), `final(model)` (the numbers of metrics.json), `epoch_of`, `num_classes`,
`image_size` and `data_info` (which data the cell saw, for metrics.json).

With several processes (an ImageNet cell, resnet.engine.launch) every process trains on its share
of each batch and evaluates its share of the evaluation images (rank::world_size); the counts are
summed over the processes, so every number is the one-process number, image for image.

Reported numbers are computed in fp32: evaluation never runs under bf16 autocast, whatever the
training precision (engine.bf16).
"""
from __future__ import annotations


import torch

from resnet.config.job import Job
from resnet.data.cifar import source as cifar_source
from resnet.data.cifar import stream as cifar
from resnet.engine.stops import ignore_stop_signals
from resnet.models.measure import recording_layer_responses

EVAL_BATCH = 500


@torch.no_grad()
def error_counts(model, batches, device, topk: int = 1) -> tuple[int, int]:
    """(wrong, images) over (x, y) batches, top-k, model in eval mode (BN moving averages), in fp32."""
    was_training = model.training
    model.eval()
    wrong = torch.zeros((), device=device, dtype=torch.int64)
    total = 0
    for images, labels in batches:
        logits = model(images.to(device, non_blocking=True).float())
        top = logits.float().topk(min(topk, logits.shape[1]), dim=1).indices
        wrong += (~(top == labels.to(device)[:, None]).any(dim=1)).sum()
        total += labels.shape[0]
    model.train(was_training)
    return int(wrong), total


def error_rate(model, batches, device, topk: int = 1) -> float:
    """Top-k error in percent over (x, y) batches (error_counts)."""
    wrong, total = error_counts(model, batches, device, topk)
    return 100.0 * wrong / max(total, 1)


def percent_wrong(dist, wrong: int, total: int) -> float:
    """The error in percent of every process's counts together."""
    wrong, total = dist.sum([wrong, total])
    return 100.0 * wrong / max(total, 1)


class CifarTask:
    """CIFAR-10, Sec. 4.2: trained on the training set (all 50k at paper scale), tested on the test set.

    With recipe val_size > 0 that many training images are held out (the paper's 45k/5k split, on
    which it chose its schedule) and evaluated alongside; nothing is ever selected on the test set:
    the reported test error is the final checkpoint's.
    """

    num_classes = 10
    image_size = 32

    def __init__(self, job: Job, device: torch.device, dist) -> None:
        if dist.enabled:  # the stream gives every process the whole batch
            from resnet.config.schema import ConfigError

            raise ConfigError("a CIFAR cell trains in one process: run it without torchrun (engine.processes "
                              "applies to ImageNet cells)")
        recipe, channels_last = job.recipe, job.engine.channels_last
        self.device = device
        arrays = cifar_source.load_cifar10(job.data.cifar10, job.data.cache, download=job.data.cifar10_download,
                                    partial=job.data.cifar10_partial)
        self.data_info = {"source": job.data.cifar10, "kind": arrays.source_kind,
                          "content_hash": arrays.content_hash}
        train_index, val_index = cifar.train_val_split(len(arrays.train_labels), recipe.val_size, seed=recipe.seed)
        train_images, train_labels = arrays.train_images[train_index], arrays.train_labels[train_index]
        if recipe.train_subset:
            train_images, train_labels = cifar.take_subset(train_images, train_labels, recipe.train_subset,
                                                           recipe.seed)
        test_images, test_labels = arrays.test_images, arrays.test_labels
        if recipe.test_subset:
            # A fixed subset for every cell of the scale (seed 0), so cells compare on the same images.
            test_images, test_labels = cifar.take_subset(test_images, test_labels, recipe.test_subset, 0)
        # Sec. 4.2: "the per-pixel mean subtracted", the mean of the images trained on.
        mean = cifar.pixel_mean(train_images)
        self.stream = cifar.CifarTrainStream(train_images, train_labels, mean, recipe.batch_size, recipe.seed, device,
                                             augment=True, channels_last=channels_last)
        self.val = None
        if len(val_index):
            self.val = cifar.CifarEvalSet(arrays.train_images[val_index], arrays.train_labels[val_index], mean,
                                          device, channels_last=channels_last)
        self.test = cifar.CifarEvalSet(test_images, test_labels, mean, device, channels_last=channels_last)

    def train_batch(self, iteration: int):
        return self.stream.batch(iteration)

    def epoch_of(self, iteration: int) -> float:
        return self.stream.epoch_of(iteration)

    def evaluate(self, model) -> dict[str, float]:
        numbers = {"test_error": error_rate(model, self.test.batches(EVAL_BATCH), self.device)}
        if self.val is not None:
            numbers["val_error"] = error_rate(model, self.val.batches(EVAL_BATCH), self.device)
        return numbers

    # The training loop evaluates the last iteration with final() instead of evaluate(): the curve's
    # last test and validation errors are the final ones, measured once.
    final_is_last_evaluation = True

    def final(self, model) -> dict:
        # Figure 7: std of every 3x3 layer's response (after BN, before addition/ReLU) on the test
        # set, recorded during the test error's own pass over it (one pass, not two).
        with recording_layer_responses(model, self.device) as responses:
            numbers = {"test_error": error_rate(model, self.test.batches(EVAL_BATCH), self.device)}
        if self.val is not None:
            numbers["val_error"] = error_rate(model, self.val.batches(EVAL_BATCH), self.device)
        return {**numbers, "layer_response_std": responses.stds()}


class ImageNetTask:
    """ImageNet, Sec. 3.4: scale-augmented training; centre-crop validation curve; 10-crop at the end.

    data.imagenet = 'synthetic' trains on a generated set of synthetic JPEGs in ImageNet layout
    (10 classes), for tests and the smoke scale; ImageNet itself is never downloaded.
    data.imagenet_loader ('auto', 'dali' or 'pil'; ``loader`` overrides it) picks the input path
    of training and centre-crop validation (resnet.data.imagenet.loaders.pick_loader); 10-crop testing is PIL's.
    Both paths give the same batches (within a grey level) for the same (seed, iteration).
    """

    def __init__(self, job: Job, device: torch.device, dist, loader: str | None = None) -> None:
        # Imported here, not at the top: CIFAR jobs need none of it (torchvision, DALI), ~2 s per job.
        from resnet.config.preflight import imagenet_kind
        from resnet.data.imagenet.folders import imagenet_listing
        from resnet.data.imagenet.loaders import pick_loader

        recipe, engine = job.recipe, job.engine
        self.recipe, self.device, self.workers, self.dist = recipe, device, engine.workers, dist
        # The folder is listed once for the whole job, by process 0 (prepared from the archives
        # first if this machine lacks it, by the launcher when there are several processes):
        # training, both loaders, validation and 10-crop testing read this listing, and its digest
        # is the data's identity.
        self.listing = dist.from_main(lambda: imagenet_listing(job.data, workers=max(1, engine.workers)))
        self.num_classes = self.listing.num_classes
        self.image_size = recipe.crop
        self.loader = pick_loader(job.data.imagenet_loader if loader is None else loader, device)
        self.channels_last = engine.channels_last
        # Loader workers leave SIGTERM / SIGUSR1 / SIGINT to this process (SLURM signals them all).
        self._shard = dict(rank=dist.rank, world_size=dist.world_size)
        self._loader_args = dict(root=self.listing, batch_size=recipe.batch_size,  # global; each rank takes its share
                                 seed=recipe.seed, short_side=tuple(recipe.train_short_side), crop=recipe.crop,
                                 workers=engine.workers, device=device, channels_last=engine.channels_last,
                                 worker_init=ignore_stop_signals, **self._shard)
        self._stream = None
        self._next_iteration = None
        self._val = None
        self.train_size = self.listing.count("train")
        self.data_info = {"source": job.data.imagenet, "root": self.listing.root,
                          "kind": imagenet_kind(job.data.imagenet), "content_hash": self.listing.digest,
                          "classes": self.num_classes, "train_images": self.train_size,
                          "val_images": self.listing.count("val"), "loader": self.loader}

    def train_batch(self, iteration: int):
        from resnet.data.imagenet.loaders import train_loader

        if self._stream is None or self._next_iteration != iteration:
            self._stream = train_loader(self.loader, start_sample=iteration * self.recipe.batch_size,
                                        **self._loader_args)
        images, labels = next(self._stream)  # on the device, finished (crops.finish_batch)
        self._next_iteration = iteration + 1
        return images, labels

    def epoch_of(self, iteration: int) -> float:
        return iteration * self.recipe.batch_size / self.train_size

    def evaluate(self, model) -> dict[str, float]:
        from resnet.data.imagenet.loaders import val_loader

        if self._val is None:  # kept: DALI's pipeline (and PIL's workers) start once
            self._val = val_loader(self.loader, self.listing, batch_size=min(self.recipe.batch_size, 256),
                                   resize=self.recipe.test_short_side, crop=self.recipe.crop, workers=self.workers,
                                   device=self.device, channels_last=self.channels_last,
                                   worker_init=ignore_stop_signals, **self._shard)
        # Figure 4's bold curves: centre-crop validation error, this process's share of the images.
        return {"val_error": percent_wrong(self.dist, *error_counts(model, self._val, self.device))}

    def final(self, model) -> dict:
        from resnet.data.imagenet.evaluation import ten_crop_counts

        centre = self.evaluate(model)["val_error"]
        counts = ten_crop_counts(model, self.listing, short_side=self.recipe.test_short_side, crop=self.recipe.crop,
                                 batch_size=max(1, min(self.recipe.batch_size, 64)), device=self.device,
                                 workers=self.workers, worker_init=ignore_stop_signals, **self._shard)
        top1, topk, images = self.dist.sum([counts.top1_correct, counts.topk_correct, counts.images])
        return {"val_error": centre, "top1_10crop": 100.0 * (1 - top1 / images),
                "top5_10crop": 100.0 * (1 - topk / images), "test_short_side": self.recipe.test_short_side}


def make_task(job: Job, device: torch.device, dist):
    return (CifarTask if job.dataset == "cifar10" else ImageNetTask)(job, device, dist)
