"""Model names: the registry's grammar, its canonical spelling and the architecture each names.

Names (used in config, file paths and MLflow):

* CIFAR-10, 10 classes: ``cifar-plain-{d}`` and ``cifar-resnet-{d}`` for any depth d = 6n+2
  (n >= 1); the paper trains 20, 32, 44, 56, 110, 1202 (Sec. 4.2).
* ImageNet, 1000 classes: ``plain-{d}`` and ``resnet-{d}`` for d in 18, 34, 50, 101, 152
  (Table 1); 50 and deeper use bottleneck blocks.
* Residual nets take an optional shortcut suffix (Sec. 3.3): ``-a`` zero-padding identity,
  ``-b`` projection only where the shape changes, ``-c`` projection on every shortcut.
  Defaults: A on CIFAR (Sec. 4.2) and for ResNet-18/34 (Table 2, Figure 4), B for 50/101/152
  (Sec. 3.3, "Deeper Bottleneck Architectures").  The canonical name drops a default suffix:
  ``resnet-34-a`` -> ``resnet-34``, ``resnet-50-b`` -> ``resnet-50``; ``resnet-34-b`` stays.
* Bottleneck nets take an optional ``-v1.5`` (stride on the 3x3, as torchvision does);
  the default is the paper's V1 (stride on the first 1x1).

This module imports nothing from the package, so ``resnet.paper`` (whose tables are keyed by
canonical names) and ``resnet.models`` (which builds a ``ModelSpec``) both depend on it and not
on each other.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CIFAR_DEPTHS = (20, 32, 44, 56, 110, 1202)  # He et al. 2015, Table 6
IMAGENET_DEPTHS = (18, 34, 50, 101, 152)  # He et al. 2015, Table 1
# Blocks per stage conv2_x..conv5_x, He et al. 2015, Table 1.
IMAGENET_BLOCKS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3),
                   101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
SHORTCUTS = {"A": "zero-padding identity", "B": "projection where the shape changes",
             "C": "projection on every shortcut"}

_GRAMMAR = ("names: cifar-{plain,resnet}-{6n+2}, {plain,resnet}-{18,34,50,101,152}, "
            "optional shortcut suffix -a/-b/-c for resnets, optional -v1.5 for 50/101/152")
_NAME = re.compile(r"^(?P<cifar>cifar-)?(?P<family>plain|resnet)-(?P<depth>\d+)"
                   r"(?:-(?P<option>[a-z]))?(?P<v15>-v1\.5)?$")


class ModelNameError(ValueError):
    """A model name the registry does not know; the message says what would work."""


@dataclass(frozen=True)
class ModelSpec:
    name: str  # canonical registry name
    dataset: str  # "cifar10" | "imagenet"
    family: str  # "plain" | "resnet"
    depth: int  # weighted layers, as the paper counts them
    shortcut: str | None  # "A" | "B" | "C"; None for plain nets
    bottleneck: bool
    blocks_per_stage: tuple[int, ...]
    variant: str = "v1"  # "v1" (paper) | "v1.5" (stride on the bottleneck's 3x3)

    @property
    def num_classes(self) -> int:
        return 10 if self.dataset == "cifar10" else 1000


def parse_model_name(name: str) -> ModelSpec:
    """Parse a registry name into a ModelSpec; raise ModelNameError saying how to fix it."""
    match = _NAME.match(name) if isinstance(name, str) else None
    if match is None and isinstance(name, str) and _NAME.match(name.strip().lower()):
        raise ModelNameError(f"unknown model {name!r}: names are lowercase without spaces; "
                             f"use {name.strip().lower()!r}")
    if match is None:
        raise ModelNameError(f"unknown model {name!r}: use e.g. 'resnet-34' or "
                             f"'cifar-resnet-56' ({_GRAMMAR})")
    cifar, family, depth = bool(match["cifar"]), match["family"], int(match["depth"])
    option, v15 = match["option"], bool(match["v15"])
    prefix = "cifar-" if cifar else ""
    if cifar:
        if depth < 8 or (depth - 2) % 6:
            lower, upper = (depth - 2) // 6 * 6 + 2, ((depth - 2) // 6 + 1) * 6 + 2
            hint = f"try {lower} or {upper}" if lower >= 8 else f"try {max(upper, 8)}"
            raise ModelNameError(f"unknown model {name!r}: CIFAR depth {depth} is not 6n+2 "
                                 f"with n >= 1; {hint} (e.g. '{prefix}{family}-20')")
        blocks, bottleneck = ((depth - 2) // 6,) * 3, False
    else:
        if depth not in IMAGENET_BLOCKS:
            raise ModelNameError(
                f"unknown model {name!r}: ImageNet depths are 18, 34, 50, 101, 152; use e.g. "
                f"'resnet-34' or 'cifar-resnet-56' ({_GRAMMAR})")
        blocks, bottleneck = IMAGENET_BLOCKS[depth], depth >= 50
    if option is not None and option.upper() not in SHORTCUTS:
        raise ModelNameError(f"unknown shortcut option '-{option}' in {name!r}: the options "
                             f"are -a (zero-padding identity), -b (projection where the shape "
                             f"changes), -c (projection everywhere); e.g. "
                             f"'{prefix}resnet-{depth}-b'")
    if family == "plain" and option is not None:
        raise ModelNameError(f"unknown model {name!r}: plain nets have no shortcuts, so no "
                             f"-{option} suffix; use '{prefix}plain-{depth}' or "
                             f"'{prefix}resnet-{depth}-{option}'")
    if v15 and not bottleneck:
        raise ModelNameError(f"unknown model {name!r}: -v1.5 applies only to bottleneck nets "
                             f"(plain/resnet-50, 101, 152); drop the suffix")
    shortcut = None
    if family == "resnet":
        default = "B" if bottleneck else "A"
        shortcut = option.upper() if option else default
    canonical = f"{prefix}{family}-{depth}"
    if shortcut is not None and shortcut != default:
        canonical += f"-{shortcut.lower()}"
    canonical += "-v1.5" if v15 else ""
    return ModelSpec(canonical, "cifar10" if cifar else "imagenet", family, depth, shortcut,
                     bottleneck, blocks, "v1.5" if v15 else "v1")


def canonical_name(name: str) -> str:
    """The one spelling of a model: the shortcut suffix is dropped when it is the default."""
    return parse_model_name(name).name
