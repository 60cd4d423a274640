"""Random cache keys instead of content hashes while TRL builds a trainer.

* Every ``Dataset.map`` call hashes its function and arguments with dill to name a
  cache entry. TRL's preprocessing passes the tokenizer, so each map pickled Gemma's
  262k-token vocabulary: 15.8 of the 28.7 s of `DPOTrainer.__init__` on 16 pairs
  (cProfile, 2-core machine).
* With ``precompute_ref_log_probs`` the DPO trainer also hashes every weight of the
  model (`trl.trainer.utils.hash_module`, 3.9 s) to key a cache file of reference
  log-probs, combined with the dataset's fingerprint.

Our datasets are built in memory (`Dataset.from_list`) for one trainer and never
reused, so a random key (what `datasets` itself falls back to when hashing fails)
loses nothing: the reference log-probs are computed for this trainer, as they must
be, and nothing stale can be read back.
"""

from __future__ import annotations

import contextlib
import secrets


@contextlib.contextmanager
def random_cache_keys(enabled: bool = True):
    """Inside the block: `Dataset.map` fingerprints and TRL's model hash are random."""
    if not enabled:
        yield
        return
    import datasets.arrow_dataset as arrow
    import datasets.fingerprint as fp

    def random_fingerprint(fingerprint, transform, transform_args):
        return fp.generate_random_fingerprint()

    def random_model_hash(module):
        return secrets.token_hex(16)

    # `arrow_dataset` imported the function by name; `fingerprint_transform` looks it up in `fp`.
    targets = [(fp, "update_fingerprint", random_fingerprint), (arrow, "update_fingerprint", random_fingerprint)]
    with contextlib.suppress(ImportError):
        import trl.trainer.dpo_trainer as dpo

        targets.append((dpo, "hash_module", random_model_hash))
    originals = [(module, name, getattr(module, name)) for module, name, _ in targets if hasattr(module, name)]
    for module, name, replacement in targets:
        if hasattr(module, name):
            setattr(module, name, replacement)
    try:
        yield
    finally:
        for module, name, original in originals:
            setattr(module, name, original)
