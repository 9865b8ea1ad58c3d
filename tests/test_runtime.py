"""``repvit.runtime``: one meaning of ``--device auto|cpu|cuda`` and of ``--threads`` for every command."""

from __future__ import annotations

import argparse

import pytest
import torch

from repvit.runtime import device_arg, resolve_device, set_threads, torch_threads


def test_auto_follows_cuda_availability(monkeypatch):
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device(None) == resolve_device("auto")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device(" AUTO ") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ValueError, match="2 CUDA device"):
        resolve_device("cuda:2")


def test_cpu_and_devices_pass_through():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


def test_cuda_without_cuda_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for spec in ("cuda", "cuda:0", torch.device("cuda")):
        with pytest.raises(ValueError, match="no CUDA device; use --device cpu"):
            resolve_device(spec)


def test_nonsense_is_a_clear_error():
    with pytest.raises(ValueError, match="auto, cpu, cuda"):
        resolve_device("gpu please")
    with pytest.raises(argparse.ArgumentTypeError, match="auto, cpu, cuda"):
        device_arg("gpu")
    assert device_arg("Auto") == "auto" and device_arg("cuda:3") == "cuda:3" and device_arg("cpu") == "cpu"


def test_threads_set_and_restored():
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with torch_threads(None):
        assert torch.get_num_threads() == before
    assert set_threads(None) == before and torch.get_num_threads() == before
    with pytest.raises(ValueError, match="positive"):
        set_threads(-1)
