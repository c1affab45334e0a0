"""GPU cost physics of the default pair's shapes (issue 17), with random weights of the real
Qwen2.5-Coder 0.5B / 1.5B architectures in bf16 (real weights cannot reach the GPU machine: its
uploads are capped at 64 MiB and it has no network).

Measures, through biglittle's own HF sessions on CUDA:
  * the cost of scoring k new positions after a 256-token prefix, k = 1..32 (median of 15)
  * big-only generation speed through biglittle and through HF generate (same net)
  * the loop's time outside the forward passes per token (speculative, drafts mostly rejected)
Writes a JSON file to $OUT; the projection from measured acceptance is done afterwards on the CPU.
Usage: python gpu_physics.py OUTDIR [--tiny]
"""
import json
import os
import statistics
import sys
import time

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

import biglittle as bl

OUT = sys.argv[1]
TINY = "--tiny" in sys.argv
COMMON = dict(vocab_size=151936, max_position_embeddings=32768, rope_theta=1e6, rms_norm_eps=1e-6,
              tie_word_embeddings=True)
SHAPES = {"0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                       num_key_value_heads=2),
          "1.5b": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                       num_key_value_heads=2)}
if TINY:
    SHAPES = {k: dict(v, num_hidden_layers=2) for k, v in SHAPES.items()}
DEV = "cuda" if torch.cuda.is_available() else "cpu"
KS = [1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 24, 32]
PREFIX = 256
REPS = 15 if DEV == "cuda" else 3
res = {"device": torch.cuda.get_device_name(0) if DEV == "cuda" else "cpu", "torch": torch.__version__}


def build(name):
    path = f"/tmp/rand-{name}-{SHAPES[name]['num_hidden_layers']}L"
    if not os.path.exists(f"{path}/config.json"):
        torch.manual_seed(0)
        cfg = Qwen2Config(**COMMON, **SHAPES[name])
        with torch.device(DEV):
            net = Qwen2ForCausalLM(cfg).to(torch.bfloat16)
        net.save_pretrained(path)
        del net
    return bl.load_model(f"hf:{path}", dtype="bfloat16", device=DEV)


def block_costs(model):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 150000, (PREFIX + 64,), generator=g).tolist()
    sess = model.session()
    sess.extend(ids[:PREFIX], keep=1)
    out = {}
    for k in KS:
        times = []
        for r in range(REPS + 3):
            t0 = time.perf_counter()
            sess.extend(ids[PREFIX:PREFIX + k], keep=k)  # returns CPU rows: synchronous
            dt = time.perf_counter() - t0
            sess.truncate(PREFIX)
            if r >= 3:
                times.append(dt)
        out[k] = statistics.median(times) * 1e3
    return out


small, big = build("0.5b"), build("1.5b")
if DEV == "cuda":  # bring the GPU out of its idle clocks before anything is timed
    a = torch.randn(8192, 8192, device=DEV, dtype=torch.bfloat16)
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < 3:
        a @ a
    torch.cuda.synchronize()
res["block_ms"] = {"small": block_costs(small), "big": block_costs(big)}
print(json.dumps(res["block_ms"]), flush=True)

prompt = torch.randint(0, 150000, (128,), generator=torch.Generator().manual_seed(2)).tolist()
N = 128
for label, policy, s in (("big-only", bl.BigOnly(), None), ("speculative-g4", bl.Speculative(draft=4), small)):
    bl.generate(s, big, prompt, policy=policy, max_new_tokens=32)  # warm up
    runs = [bl.generate(s, big, prompt, policy=policy, max_new_tokens=N) for _ in range(3)]
    st = sorted(runs, key=lambda r: r.stats.wall_s)[1].stats  # the median run
    res[label] = {"tokens": st.new_tokens, "wall_s": st.wall_s, "ms_per_token": 1e3 * st.wall_s / st.new_tokens,
                  "outside_forward_ms_per_token": 1e3 * (st.wall_s - st.small_s - st.big_s) / st.new_tokens,
                  "acceptance": st.accepted / max(st.drafted, 1)}
    print(label, res[label], flush=True)

ids = torch.tensor([prompt], device=DEV)
with torch.inference_mode():
    for label, kw in (("hf-generate", {}), ("hf-assisted", {"assistant_model": small.net})):
        big.net.generate(ids, max_new_tokens=8, do_sample=False, **kw)
        if DEV == "cuda":
            torch.cuda.synchronize()
        dts = []
        for _ in range(3):
            t0 = time.perf_counter()
            out = big.net.generate(ids, max_new_tokens=N, min_new_tokens=N, do_sample=False, **kw)
            if DEV == "cuda":
                torch.cuda.synchronize()
            dts.append(time.perf_counter() - t0)
        dt = sorted(dts)[1]
        n = out.shape[1] - ids.shape[1]
        res[label] = {"tokens": n, "ms_per_token": 1e3 * dt / n}
        print(label, res[label], flush=True)

os.makedirs(OUT, exist_ok=True)
with open(os.path.join(OUT, "gpu_physics.json"), "w") as f:
    json.dump(res, f, indent=1)
