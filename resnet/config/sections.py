"""The sections of config.yaml as typed, frozen dataclasses: every key with its type, bounds and meaning.

config.yaml holds every default: each key below is required (resnet.config.schema.parse), so a key
deleted by mistake is named at load time instead of failing inside a job.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from resnet.config.schema import NAME_PATTERN, setting, to_plain

# The batch each recipe's learning rate is stated for (He et al. 2015, Sec. 4.2 and Sec. 3.4).
# When a scale preset changes the batch, the learning rate follows the linear scaling rule.
REFERENCE_BATCH = {"cifar10": 128, "imagenet": 256}


# CIFAR-10: 50,000 training and 10,000 test images (Krizhevsky 2009; Sec. 4.2 of the paper).
CIFAR10_SIZES = {"train": 50_000, "test": 10_000}


# ILSVRC2012 classification: 1,000 classes, 1,281,167 training and 50,000 validation images (the paper's
# Sec. 4.1: "1000 classes ... 1.28 million training images ... 50k validation images"; the exact
# training count is the devkit readme's).
IMAGENET_SIZES = {"classes": 1_000, "train": 1_281_167, "val": 50_000}


# The three archives ILSVRC2012 ships (the names torchvision.datasets.imagenet.ARCHIVE_META expects).
IMAGENET_ARCHIVES = {"train": "ILSVRC2012_img_train.tar", "val": "ILSVRC2012_img_val.tar",
                     "devkit": "ILSVRC2012_devkit_t12.tar.gz"}


@dataclass(frozen=True)
class Data:
    cifar10: str = setting("a torchvision CIFAR-10 folder (holding cifar-10-batches-py/), an ImageFolder tree "
                           "with train/ and test/ class folders, or a .tar.gz of one")
    cifar10_download: bool = setting("true: download torchvision's CIFAR-10 into data.cifar10 when it is missing")
    cifar10_partial: bool = setting("true: accept a source that is not the whole of CIFAR-10 (50,000 + 10,000 "
                                    "images, 10 balanced classes), e.g. a small test fixture")
    imagenet: str = setting("a folder holding ILSVRC2012's three archives (prepared into data.imagenet_prepared), "
                            "a folder with train/ and val/ class folders, or 'synthetic'")
    imagenet_prepared: str = setting("where the class folders built from the archives go: 'auto' (a folder "
                                     "'prepared' beside the archives) or a folder, e.g. node-local scratch")
    imagenet_partial: bool = setting("true: accept an ImageNet that is not the whole of ILSVRC2012 (1,000 classes, "
                                     "1,281,167 + 50,000 images), e.g. a deliberate subset or a test fixture")
    imagenet_loader: str = setting("auto (DALI on CUDA when installed, else PIL) | dali | pil",
                                   choices=("auto", "dali", "pil"))
    cache: str = setting("folder for decoded CIFAR arrays and the synthetic ImageNet set")


@dataclass(frozen=True)
class MLflowSettings:
    tracking_uri: str = setting("an MLflow tracking URI: sqlite:///results/mlflow.db or http://host:5000")
    experiment: str = setting("the MLflow experiment name", pattern=NAME_PATTERN)
    live: bool = setting("true: each training job logs its run as it trains; false: the workflow's summary step "
                         "logs every cell's run from its files")


@dataclass(frozen=True)
class Plan:
    cifar10: bool = setting("train the CIFAR-10 cells (Table 6, Figures 1, 6, 7)")
    imagenet: bool = setting("train the ImageNet cells (Tables 2, 3, Figure 4)")
    cifar_plain_depths: tuple[int, ...] = setting("plain CIFAR nets, depths 6n+2", min=8)
    cifar_resnet_depths: tuple[int, ...] = setting("CIFAR ResNets, depths 6n+2", min=8)
    cifar_seeds: tuple[int, ...] = setting("seeds of every CIFAR cell", min=0, min_items=1)
    resnet110_seeds: tuple[int, ...] = setting("Table 6's ResNet-110 runs", min=0)
    imagenet_models: tuple[str, ...] = setting("ImageNet models, e.g. resnet-34-b", pattern=NAME_PATTERN)
    imagenet_seeds: tuple[int, ...] = setting("seeds of every ImageNet cell", min=0, min_items=1)


@dataclass(frozen=True)
class Warmup:
    min_depth: int = setting("ResNets at least this deep warm up", min=8)
    lr: float = setting("the warm-up learning rate (per reference batch)", above=0)
    until_train_error: float = setting("percent; back to the base lr below this training error", above=0, max=100)


@dataclass(frozen=True)
class RecipeSettings:
    batch_size: int = setting("images per iteration (global)", min=1)
    lr: float = setting("base learning rate per reference batch (128 CIFAR, 256 ImageNet)", above=0)
    momentum: float = setting("SGD momentum", min=0, below=1)
    weight_decay: float = setting("L2 weight decay", min=0)
    iterations: int = setting("training iterations", min=1)
    milestones: tuple[int, ...] = setting("iterations at which lr is multiplied by lr_decay", min=1)
    lr_decay: float = setting("factor at each milestone", above=0, max=1)
    bn_group: int = setting("images per batch-norm statistics group; 0: the whole per-process batch", min=0)
    eval_every: int = setting("iterations between evaluations", min=1)
    log_every: int = setting("iterations between curve rows", min=1)


@dataclass(frozen=True)
class CifarRecipeSettings(RecipeSettings):
    warmup: Warmup | None = setting("Sec. 4.2's warm-up of ResNet-110 and deeper; null: none")
    val_size: int = setting("training images held out for validation; 0: train on all 50,000", min=0)
    train_subset: int = setting("0: every training image; n: a fixed, class-balanced subset of n", min=0)
    test_subset: int = setting("0: all 10,000 test images; n: a fixed subset of n", min=0)


@dataclass(frozen=True)
class ImageNetRecipeSettings(RecipeSettings):
    train_short_side: tuple[int, int] = setting("scale augmentation: shorter side uniform in [low, high]", min=8)
    crop: int = setting("training and test crop, pixels", min=8)
    test_short_side: int = setting("shorter side for centre-crop and 10-crop testing", min=8)


@dataclass(frozen=True)
class Recipes:
    cifar10: CifarRecipeSettings
    imagenet: ImageNetRecipeSettings


@dataclass(frozen=True)
class Engine:
    device: str = setting("auto (CUDA when present, else CPU) | cpu | cuda", choices=("auto", "cpu", "cuda"))
    bf16: bool = setting("CUDA only: train under bf16 autocast")
    channels_last: bool = setting("channels_last memory format for convolutions")
    cuda_graphs: bool = setting("CUDA only: CIFAR's whole training step as one CUDA graph")
    compile: bool = setting("torch.compile the model")
    deterministic: bool = setting("deterministic kernels")
    checkpoint_every: int = setting("iterations between periodic checkpoints", min=1)
    workers: int = setting("ImageNet input worker processes per training process", min=0)
    processes: int = setting("ImageNet training processes per job (0: one per visible GPU, one without a GPU)", min=0)


@dataclass(frozen=True)
class JobResources:
    gpus: int = setting("GPUs per job", min=0)
    cpus: int = setting("CPU cores per job", min=1)
    mem_mb: int = setting("memory per job, MB", min=1)
    runtime_min: int = setting("a job's time limit, minutes (longer cells are resubmitted and resume)", min=1)


@dataclass(frozen=True)
class Resources:
    cifar10: JobResources
    imagenet: JobResources
    imagenet_prepare: JobResources  # the job making ImageNet ready (workflow/rules/data.smk)
    max_resubmits: int = setting("how often an interrupted cell is resubmitted before it is marked failed", min=0)
    cifar_cells_per_gpu: int = setting("one machine: CIFAR cells sharing one GPU (with --resources gpu_slots)",
                                       min=1)
    cifar_cells_per_job: int = setting("SLURM: CIFAR cells grouped into one GPU job", min=1)


@dataclass(frozen=True)
class Config:
    """The validated experiment, with the active scale preset already laid over."""

    scale: str = setting("a preset name under 'scales'", pattern=NAME_PATTERN)
    data: Data
    mlflow: MLflowSettings
    plan: Plan
    recipes: Recipes
    engine: Engine
    resources: Resources

    def recipe(self, dataset: str) -> CifarRecipeSettings | ImageNetRecipeSettings:
        return getattr(self.recipes, dataset)

    def to_dict(self) -> dict[str, Any]:
        return to_plain(self)


@dataclass(frozen=True)
class Cell:
    """One training job: a model at a seed. Its id is also its folder under results/runs/<scale>/."""

    model: str
    seed: int
    dataset: str

    @property
    def id(self) -> str:
        return f"{self.model}/seed-{self.seed}"
