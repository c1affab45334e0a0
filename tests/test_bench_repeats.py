"""bench with repeats: a sample's wall time and its statistics (prompt_s among them) come from one
run, the median one, so its decode phase (wall_s − prompt_s) never mixes two runs."""
from types import SimpleNamespace

from biglittle.bench.methods import Method, Output
from biglittle.bench.runner import BenchConfig, run_methods


class Scripted(Method):
    """A method whose runs take the given (wall_s, prompt_s) in turn: no model, no clock."""

    def __init__(self, spec, runs):
        super().__init__(spec, spec, {})
        self.runs = list(runs)

    def run(self, small, big, prompt_ids, max_new_tokens, temperature=0.0, seed=0):
        wall, prompt = self.runs.pop(0)
        return Output([1, 2], "ab", wall, {"prompt_s": prompt})


def test_wall_and_prompt_time_come_from_the_median_run(monkeypatch):
    monkeypatch.setattr("biglittle.bench.runner.encode_prompt", lambda big, prompt, chat: [0])
    task = SimpleNamespace(name="t", max_new_tokens=4, build_prompt=lambda ex, chat: "p")
    # three runs: the median by wall time is the second (5 s), whose prompt read took 4 s
    m = Scripted("big", [(9.0, 1.0), (5.0, 4.0), (2.0, 0.5)])
    config = BenchConfig(small=None, big="b", tasks=["t"], methods=["big"], n=1, repeats=3, warmup=False)
    [s] = run_methods(None, None, task, [SimpleNamespace(id=0)], [m], config)
    assert (s.wall_s, s.stats["prompt_s"]) == (5.0, 4.0)
    assert s.walls == [9.0, 5.0, 2.0]
