"""What each policy does on the tiny test pair: tokens by origin, big calls, rollbacks, fallbacks.

    .venv/bin/python scripts/policy_table.py
"""
import math
import os
import sys
import tempfile
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from tiny import make_model, make_draft_of
import biglittle as bl
d = tempfile.mkdtemp()
bp = make_model(d + "/big", layers=2, hidden=64, seed=1, sharpen=50.0)
big = bl.load_model("hf:" + bp)
small = bl.load_model("hf:" + make_draft_of(bp, d + "/small", keep_layers=2, noise=0.2, seed=2))
prompt = [3, 1, 4, 1, 5, 9, 2, 6]
ref = bl.generate(None, big, prompt, policy=bl.BigOnly(), max_new_tokens=64).token_ids
print("| policy | tokens | from small | big calls | small calls | drafted | accepted | rollbacks | fallbacks | = big greedy |")
print("|---|---|---|---|---|---|---|---|---|---|")
for pol in [bl.BigOnly(), bl.SmallOnly(), bl.Speculative(draft=4), bl.Speculative(draft=4, schedule="heuristic"),
            bl.Speculative(draft=4, schedule="auto"), bl.BiLD(), bl.BiLD(fallback=0.5, rollback=1.0), bl.BiLD(rollback=math.inf),
            bl.BiLD(fallback=1.5), bl.BiLD(rollback=0.0)]:
    r = bl.generate(small if pol.uses_small else None, big if pol.uses_big else None, prompt, policy=pol, max_new_tokens=64)
    s = r.stats
    print(f"| `{pol.describe()}` | {s.new_tokens} | {s.small_tokens} | {s.big_calls} | {s.small_calls} | {s.drafted} | {s.accepted} | {s.rollbacks} | {s.fallbacks} | {r.token_ids == ref} |")
