"""Engines that run PyTorch code on the pipeline's bound buffers (viewed as torch tensors, no copy),
on the pipeline's CUDA stream: the eager and compiled Sam3Model stages and AOTInductor packages."""
from __future__ import annotations

from typing import Any, Dict

import numpy as np

from .base import ArrayEngine, TensorSpec, buffer_address


class TorchStage(ArrayEngine):
    """``compute(views)`` gets every tensor as a torch view and writes the outputs in place.

    ``static_batch``: compiled code runs one batch, the bound buffers' whole one; rounds with
    fewer cameras leave the rows past them to be computed and ignored (no recompilation).
    ``static_addresses``: tell torch.compile the buffers never move (what CUDA graphs need).
    """

    static_batch = False
    static_addresses = False

    def __init__(self, name: str, specs: Dict[str, TensorSpec], device: str):
        import torch

        super().__init__(name, specs, device)
        self.torch = torch
        self._views: Dict[tuple, Any] = {}   # (name, address, shape) -> torch view, made once

    def compute(self, views: Dict[str, Any]) -> None:
        raise NotImplementedError

    def full_batch(self) -> Dict[str, Any]:
        """Every bound buffer at its whole batch."""
        rows = {name: self._bound[name].size // int(np.prod(spec.shape[1:])) for name, spec in self._specs.items()}
        batch = min(rows[name] for name, spec in self._specs.items() if spec.is_input and -1 in spec.shape)
        return {name: self._view(name, spec.with_batch(batch)) for name, spec in self._specs.items()}

    def _torch_views(self, tensors: Dict[str, Any]) -> Dict[str, Any]:
        views = {}
        for name, array in tensors.items():
            key = (name, buffer_address(array), array.shape)
            view = self._views.get(key)
            if view is None:
                view = self._views[key] = self.torch.as_tensor(array, device=self.device)
                if self.static_addresses:
                    self.torch._dynamo.mark_static_address(view)   # allocated once: CUDA graphs may keep it
            views[name] = view
        return views

    def execute(self, tensors: Dict[str, Any], stream: int) -> None:
        torch = self.torch
        views = self._torch_views(self.full_batch() if self.static_batch else tensors)
        if self.device == "cuda":
            with torch.cuda.stream(torch.cuda.ExternalStream(stream)), torch.inference_mode():
                self.compute(views)
        else:
            with torch.inference_mode():
                self.compute(views)
