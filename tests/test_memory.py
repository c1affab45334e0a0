"""The suite's own memory hygiene (tests/conftest.py): a model a test dropped is really freed
before the next test loads more, which is what keeps `make test` under 8 GB."""
import weakref

import pytest

import biglittle as bl
from conftest import release_memory


@pytest.mark.slow
def test_a_dropped_llamacpp_model_is_freed_by_release_memory(smol):
    """A llama.cpp model sits in a reference cycle: dropping the last name does not free it (the
    CLI's models in test_real_models stayed, 2.5 GB), the collection conftest runs does."""
    model = bl.load_model(smol.spec, n_ctx=64)
    model.session().extend([1, 2, 3])
    gone = weakref.ref(model)
    del model
    release_memory()
    assert gone() is None
