"""Where a model runs: the `device` option of the transformers backends and `n_gpu_layers` of llama.cpp.

    device="auto"    CUDA if the machine has it, then Apple's MPS, then the CPU
    device="cpu" | "cuda" | "cuda:N" | "mps"

A device the machine lacks is a ConfigError that names the devices it has, so a typo or a
CPU-only build of torch is found at load time, not at the first forward pass.
"""
from __future__ import annotations

import torch

from ..errors import ConfigError

DEVICE_FORMS = '"auto", "cpu", "cuda", "cuda:N" or "mps"'


def available_devices() -> list[str]:
    """The devices torch can use on this machine, CPU first."""
    found = ["cpu"]
    if torch.cuda.is_available():
        found += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if _has_mps():
        found.append("mps")
    return found


def _has_mps() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_device(device: str | torch.device | None) -> torch.device:
    """The torch device for a device option; None means "auto"."""
    name = "auto" if device is None else str(device).strip().lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if _has_mps() else "cpu"
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(f"unknown device {device!r}; use {DEVICE_FORMS}") from None
    have = ", ".join(available_devices())
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{name} requested but this machine has no CUDA device "
                              f"(torch.cuda.is_available() is False); available: {have}")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"{name} requested but this machine has {torch.cuda.device_count()} CUDA "
                              f"device(s); available: {have}")
        if dev.index is None:  # "cuda" is the current GPU; name it, as the weights' device will be named
            dev = torch.device("cuda", torch.cuda.current_device())
    elif dev.type == "mps":
        if not _has_mps():
            raise ConfigError(f"mps requested but this machine has no MPS device "
                              f"(torch.backends.mps.is_available() is False); available: {have}")
    elif dev.type != "cpu":
        raise ConfigError(f"unsupported device {device!r}; use {DEVICE_FORMS}")
    return dev


def llama_gpu_layers(device: str | None, supports_offload: bool) -> int:
    """llama.cpp's n_gpu_layers for a device option: "cpu" 0, a GPU (cuda, cuda:N, mps) every layer
    (-1), "auto" every layer when this llama-cpp-python build can offload and 0 otherwise."""
    name = "auto" if device is None else str(device).strip().lower()
    if name == "cpu":
        return 0
    if name == "auto":
        return -1 if supports_offload else 0
    if name in ("cuda", "mps") or (name.startswith("cuda:") and name[5:].isdigit()):
        if not supports_offload:
            raise ConfigError(f"{name} requested but this llama-cpp-python build cannot offload to a GPU "
                              "(llama_supports_gpu_offload() is False; reinstall it with CMAKE_ARGS=-DGGML_CUDA=on, "
                              'or -DGGML_METAL=on on a Mac); available: cpu')
        return -1
    raise ConfigError(f"unknown device {device!r}; use {DEVICE_FORMS}")


def main_gpu(device: str | None) -> int | None:
    """The GPU index of "cuda:N" (llama.cpp's main_gpu), None for any other device."""
    name = "" if device is None else str(device).strip().lower()
    return int(name[5:]) if name.startswith("cuda:") and name[5:].isdigit() else None
