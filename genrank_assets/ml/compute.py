"""Which device and precision the models run on, resolved once.

The rules (``resolve_compute``; the ``compute`` resource of the code location calls it with its config):

* **device** — ``auto``: CUDA when torch sees a GPU, else CPU; ``cpu``; ``cuda`` / ``cuda:N``, which must exist
  (otherwise a ``ValueError`` naming ``compute.device``).
* **precision** — ``auto``: fp32 on CPU; on CUDA bf16 when the GPU has it, else fp32 (``auto`` never picks fp16:
  T5 overflows easily in fp16). ``fp32`` anywhere. ``fp16`` / ``bf16`` (autocast; fp16 adds gradient scaling)
  need a CUDA device: asked for on CPU they are a ``ValueError`` naming ``compute.precision``, never a silent
  fallback; ``bf16`` on a GPU without bf16 is the same error.
* **processes** — data-parallel training processes on this node (torch.distributed: gloo on CPU, nccl on CUDA);
  ``1`` trains in the calling process. Must be >= 1.
* **threads** — torch intra-op threads. ``0`` = auto: on CPU half the cores, at most 4 (small models: one thread
  per job beat two that fight over 2 cores, docs/findings.md); on CUDA torch's default.
* **per asset** — an asset config's ``device`` / ``precision`` (``asset_device`` / ``asset_precision`` here;
  empty = the resource's) win over the resource's for that asset alone, so one run can train TIGER on
  ``cuda:0``, the ranker on ``cuda:1`` and fit RQ-KMeans on CPU. An asset that sets only ``device`` takes the
  resource's precision, except on CPU, where it runs fp32: the resource's fp16 / bf16 is meant for its CUDA
  device, and refusing it would make ``device: cpu`` for one asset need a second setting. Errors about an
  asset's own value name it (``ops.tiger_model.config.device``), the resource's ``compute.*``.

The trainers, ``RQKMeans`` and the generator's beam search take the resolved :class:`Compute` (or its device)
and do not resolve anything again.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

PRECISIONS = ("fp32", "fp16", "bf16")


def check_device(device: str, *, name: str = "device", require_available: bool = True) -> str:
    """``device`` normalised (``cpu``, ``cuda``, ``cuda:N``); a ValueError for anything else, and with
    ``require_available`` for a CUDA device that this machine does not have."""
    dev = str(device).strip().lower()
    is_cuda = dev == "cuda" or (dev.startswith("cuda:") and dev[5:].isdigit())
    if dev != "cpu" and not is_cuda:
        raise ValueError(f"{name} must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    if is_cuda and require_available:
        import torch

        if not torch.cuda.is_available():
            raise ValueError(f"{name}={device!r} but CUDA is not available on this machine; use 'cpu' or 'auto'")
        index = int(dev[5:]) if ":" in dev else 0
        if index >= torch.cuda.device_count():
            raise ValueError(f"{name}={device!r} but this machine has {torch.cuda.device_count()} CUDA device(s)")
    return dev


def _check_precision(precision: str, device: str, name: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"{name} must be auto, fp32, fp16 or bf16, got {precision!r}")
    if precision != "fp32" and device == "cpu":
        raise ValueError(f"{name}={precision!r} needs a CUDA device; on CPU use fp32 (or auto, which is fp32 there)")
    if precision == "bf16":
        import torch

        if not torch.cuda.is_bf16_supported():
            raise ValueError(f"{name}='bf16' but this GPU has no bf16; use fp16 or fp32")
    return precision


@dataclass(frozen=True)
class Compute:
    """A resolved device and precision (see the module docstring for the rules, checked on construction)."""

    device: str = "cpu"  # cpu | cuda | cuda:N
    precision: str = "fp32"  # fp32 | fp16 | bf16
    threads: int = 0  # torch intra-op threads; 0 = leave torch's setting alone
    processes: int = 1  # data-parallel training processes on this node; 1 = train in this process

    def __post_init__(self) -> None:
        object.__setattr__(self, "device", check_device(self.device))
        _check_precision(self.precision, self.device, "precision")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")
        if isinstance(self.processes, bool) or int(self.processes) < 1:
            raise ValueError(f"processes must be >= 1, got {self.processes!r}")

    @property
    def torch_device(self):
        import torch

        return torch.device(self.device)

    def autocast(self):
        """Autocast for fp16/bf16; a no-op context for fp32."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        import torch

        dtype = torch.float16 if self.precision == "fp16" else torch.bfloat16
        return torch.autocast(device_type=self.torch_device.type, dtype=dtype)

    def grad_scaler(self):
        """A gradient scaler, enabled for fp16 only (a pass-through otherwise)."""
        import torch

        return torch.amp.GradScaler(self.torch_device.type, enabled=self.precision == "fp16")

    def apply_threads(self) -> None:
        if self.threads > 0:
            import torch

            torch.set_num_threads(self.threads)


CPU = Compute()


def resolve_compute(device: str = "auto", precision: str = "auto", threads: int = 0, processes: int = 1, *,
                    asset_device: str = "", asset_precision: str = "", where: str = "") -> Compute:
    """The :class:`Compute` for a ``compute`` resource's settings, or for one asset's ``asset_device`` /
    ``asset_precision`` over them (rules: the module docstring). Errors name the ``compute.*`` field, or
    ``{where}.device`` / ``{where}.precision`` for the asset's own values."""
    own_device, own_precision = str(asset_device or "").strip(), str(asset_precision or "").strip()
    device_name = f"{where}.device" if own_device else "compute.device"
    precision_name = f"{where}.precision" if own_precision else "compute.precision"
    dev = (own_device or str(device)).strip().lower()
    if dev == "auto":
        import torch

        dev = "cuda" if torch.cuda.is_available() else "cpu"
    dev = check_device(dev, name=device_name)
    prec = (own_precision or str(precision)).strip().lower()
    if own_device and not own_precision and dev == "cpu":
        prec = "fp32"  # an asset moved to CPU runs fp32 whatever the resource's (CUDA) precision
    if prec == "auto":
        prec = "fp32" if dev == "cpu" else ("bf16" if _has_bf16() else "fp32")
    _check_precision(prec, dev, precision_name)
    if threads < 0:
        raise ValueError(f"compute.threads must be >= 0, got {threads}")
    if threads == 0 and dev == "cpu":
        threads = max(1, min(4, (os.cpu_count() or 1) // 2))
    if isinstance(processes, bool) or int(processes) < 1:
        raise ValueError(f"compute.processes must be >= 1, got {processes!r}")
    return Compute(dev, prec, int(threads), int(processes))


def check_asset_settings(device: str = "", precision: str = "", *, where: str = "") -> None:
    """The format of an asset config's own ``device`` / ``precision`` (empty: the resource's), without asking
    whether the device exists: the run's checks do that against this machine before the first step."""
    if str(device or "").strip() and str(device).strip().lower() != "auto":
        check_device(device, name=f"{where}device", require_available=False)
    prec = str(precision or "").strip().lower()
    if prec and prec != "auto" and prec not in PRECISIONS:
        raise ValueError(f"{where}precision must be auto, fp32, fp16 or bf16, got {precision!r}")


def _has_bf16() -> bool:
    import torch

    return bool(torch.cuda.is_bf16_supported())
