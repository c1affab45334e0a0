"""The benchmark harness: methods (ours and peers), the runner, and its reports.

A task (see biglittle.data) provides: name, max_new_tokens, primary_metric (None when the task
has no reference answers), load(n, seed) → examples with .id and .reference,
build_prompt(example, chat) → str or chat messages, metric(outputs, references) → {name: value}.
"""
