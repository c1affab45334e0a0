"""Device placement (issue 17): `device=` for the transformers backends, n_gpu_layers for llama.cpp,
the CLI's --device/--small-device/--big-device.

On a CPU-only machine these check "cpu" and "auto" (which picks the CPU there), and that a device
the machine lacks is a clear ConfigError before any weights load. torch offers no second CPU-like
device, so mixed placements (small on the CPU, big on a GPU, and the reverse) run only in the
tests marked `gpu`, which are skipped where torch.cuda.is_available() is False.
"""
import pytest
import torch
from typer.testing import CliRunner

import biglittle as bl
from biglittle.cli import app
from biglittle.errors import ConfigError, ModelSpecError
from biglittle.models.device import available_devices, llama_gpu_layers, resolve_device
from biglittle.models.hf import logp_rows

HAS_CUDA = torch.cuda.is_available()
HAS_MPS = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
cpu_only = pytest.mark.skipif(HAS_CUDA or HAS_MPS, reason="checks what a CPU-only machine does")
N = 40


# ---------------------------------------------------------------- CPU (every machine)

@cpu_only
def test_auto_picks_the_cpu_on_a_cpu_only_machine():
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device(None) == torch.device("cpu")
    assert available_devices() == ["cpu"]


@pytest.mark.parametrize("device", ["cpu", "auto"])
def test_cpu_and_auto_load_and_decode_like_the_default(device, small_path, big_path, small, big, prompt):
    s = bl.load_model(f"hf:{small_path}", device=device)
    b = bl.load_model(f"hf:{big_path}", device=device)
    assert b.device == resolve_device(device) and s.device == b.device
    assert next(b.net.parameters()).device.type == b.device.type
    ref = bl.generate(small, big, prompt, policy=bl.Speculative(draft=4), max_new_tokens=N).token_ids
    assert bl.generate(s, b, prompt, policy=bl.Speculative(draft=4), max_new_tokens=N).token_ids == ref


@cpu_only
@pytest.mark.parametrize("device, missing", [("cuda", "no CUDA device"), ("cuda:7", "no CUDA device"),
                                             ("mps", "no MPS device")])
def test_a_device_the_machine_lacks_is_a_clear_error_before_loading(device, missing, big_path, tmp_path):
    gguf = tmp_path / "x.gguf"
    gguf.write_bytes(b"GGUF" + bytes(64))  # the file is never read: the device is checked first
    for spec in (f"hf:{big_path}", f"hf-gguf:{gguf}"):
        with pytest.raises(ConfigError) as e:
            bl.load_model(spec, device=device)
        assert f"{device} requested but this machine has {missing}" in str(e.value)
        assert "available: cpu" in str(e.value)


@pytest.mark.parametrize("device", ["tpu", "cuda:x", "gpu"])
def test_an_unknown_device_names_the_accepted_forms(device, big_path):
    with pytest.raises(ConfigError, match=r'"auto", "cpu", "cuda", "cuda:N" or "mps"'):
        bl.load_model(f"hf:{big_path}", device=device)


def test_a_remote_model_refuses_a_device_but_takes_auto():
    with pytest.raises(ModelSpecError, match="runs where its server put it"):
        bl.load_model("remote:http://127.0.0.1:9#m", device="cuda")


def test_llama_cpp_layers_follow_the_device():
    assert llama_gpu_layers("cpu", True) == 0 and llama_gpu_layers("cpu", False) == 0
    assert llama_gpu_layers("auto", True) == -1 and llama_gpu_layers("auto", False) == 0
    assert llama_gpu_layers("cuda", True) == -1 and llama_gpu_layers("cuda:1", True) == -1
    with pytest.raises(ConfigError, match="cannot offload to a GPU"):
        llama_gpu_layers("cuda", False)


def test_cuda_on_a_cpu_only_llama_cpp_build_is_a_clear_error(tmp_path):
    llama_cpp = pytest.importorskip("llama_cpp")
    if llama_cpp.llama_supports_gpu_offload():
        pytest.skip("this llama-cpp-python build can offload")
    gguf = tmp_path / "x.gguf"
    gguf.write_bytes(b"GGUF" + bytes(64))  # refused before llama.cpp reads it
    with pytest.raises(ConfigError, match=r"llama_supports_gpu_offload\(\) is False"):
        bl.load_model(f"gguf:{gguf}", device="cuda")


def test_log_probs_cross_as_float32_cpu_rows():
    # the protocol (models/base.py): whatever the net computes in, the rows come back float32 on the CPU
    logits = torch.randn(3, 50, dtype=torch.bfloat16)
    rows = logp_rows(logits)
    assert rows.dtype == torch.float32 and rows.device.type == "cpu"
    assert torch.allclose(rows.exp().sum(-1), torch.ones(3))


@cpu_only
@pytest.mark.parametrize("flags", [["--device", "cuda"], ["--big-device", "cuda"], ["--small-device", "mps"]])
def test_cli_device_flags_refuse_a_missing_device(flags, small_path, big_path):
    res = CliRunner().invoke(app, ["generate", "--small", f"hf:{small_path}", "--big", f"hf:{big_path}",
                                   "--policy", "speculative", *flags, "Hello"])
    assert res.exit_code == 2
    assert "requested but this machine has no" in res.output and "available: cpu" in res.output


def test_cli_small_and_big_device_override_device(text_pair):
    # --device cuda would fail on a CPU-only machine; each side's own flag wins
    small, big = text_pair
    res = CliRunner().invoke(app, ["generate", "--small", small.spec, "--big", big.spec,
                                   "--policy", "speculative", "--device", "cuda", "--small-device", "cpu",
                                   "--big-device", "cpu", "--max-new-tokens", "4", "--json", "Hello"])
    assert res.exit_code == 0, res.output


# ---------------------------------------------------------------- GPU (skipped without CUDA)

def _pair(small_path, big_path, dtype, small_device, big_device):
    return (bl.load_model(f"hf:{small_path}", dtype=dtype, device=small_device),
            bl.load_model(f"hf:{big_path}", dtype=dtype, device=big_device))


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
@pytest.mark.parametrize("small_device, big_device", [("cuda", "cuda"), ("cpu", "cuda"), ("cuda", "cpu")])
def test_gpu_speculative_greedy_equals_big_only(dtype, small_device, big_device, small_path, big_path, prompt):
    s, b = _pair(small_path, big_path, dtype, small_device, big_device)
    assert b.device.type == big_device and s.device.type == small_device
    ref = bl.generate(None, b, prompt, policy=bl.BigOnly(), max_new_tokens=N)
    for policy in (bl.Speculative(draft=4), bl.Speculative(draft=4, schedule="auto")):
        out = bl.generate(s, b, prompt, policy=policy, max_new_tokens=N)
        assert out.token_ids == ref.token_ids, (dtype, small_device, big_device, policy)
    assert bl.generate(s, b, prompt, policy=bl.BiLD(), max_new_tokens=N).stats.new_tokens == N


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
def test_gpu_fp32_matches_the_cpu_reference(small_path, big_path, big, prompt):
    # fp32 stays the exactness reference: the same greedy text on the GPU as on the CPU
    _, b = _pair(small_path, big_path, "float32", "cuda", "cuda")
    cpu_ref = bl.generate(None, big, prompt, policy=bl.BigOnly(), max_new_tokens=N).token_ids
    assert bl.generate(None, b, prompt, policy=bl.BigOnly(), max_new_tokens=N).token_ids == cpu_ref


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
@pytest.mark.parametrize("placement", [("cuda", "cuda"), ("cpu", "cuda"), ("cuda", "cpu")])
def test_gpu_seeded_sampling_repeats(placement, small_path, big_path, prompt):
    # the sampler's generator is a CPU one; the log-probs it reads are CPU rows (models/base.py)
    s, b = _pair(small_path, big_path, "float32", *placement)
    runs = [bl.generate(s, b, prompt, policy=bl.Speculative(draft=4), max_new_tokens=N, temperature=1.0,
                        seed=3).token_ids for _ in range(2)]
    assert runs[0] == runs[1] and len(runs[0]) == N
