"""What a recomputation in the backward pass needs from the forward it repeats: the CPU and CUDA random states, so
that dropout draws the same masks, and the autocast state, so that it runs in the same precision (as
``torch.utils.checkpoint`` keeps them). Used by the patches that compute a forward again: offloaded checkpointing
and the tiled MLP."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ForwardState:
    device: Any  # torch.device
    cpu_rng: Any
    cuda_rng: Any  # None off CUDA
    autocast: bool
    autocast_dtype: Any

    @classmethod
    def capture(cls, device) -> ForwardState:
        import torch

        cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
        return cls(device, torch.get_rng_state(), cuda, torch.is_autocast_enabled(device.type),
                   torch.get_autocast_dtype(device.type))

    @contextlib.contextmanager
    def replay(self):
        """Gradients on, the forward's random states and autocast; the random states as they were afterwards."""
        import torch

        with torch.random.fork_rng(devices=[self.device] if self.cuda_rng is not None else []):
            torch.set_rng_state(self.cpu_rng)
            if self.cuda_rng is not None:
                torch.cuda.set_rng_state(self.cuda_rng, self.device)
            with torch.enable_grad(), torch.autocast(self.device.type, dtype=self.autocast_dtype,
                                                     enabled=self.autocast):
                yield
