"""The device a training process runs on (engine.device)."""
from __future__ import annotations

import torch

from resnet.engine import distributed


def pick_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        from resnet.config.schema import ConfigError

        raise ConfigError("config key 'engine.device': 'cuda' but no CUDA GPU is visible here: set "
                          "engine.device: auto or cpu, or run on a machine with a GPU")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        return torch.device("cuda", distributed.local_rank())
    return torch.device(name)
