"""Editing a saved focusface checkpoint in a test: after a deliberate change, `rehash` stores the hashes the change
implies, so that the check under test (a size, a config key, a resume rule) is reached instead of the hash check."""

from focusface.checkpoints import content_digest, state_digest


def rehash(raw: dict) -> dict:
    "Store in `raw` the two hashes of its current weights and training state, as `save_checkpoint` would."
    raw["sha256"] = state_digest(raw.get("state_dict"))
    raw["extra_sha256"] = content_digest(dict(config=raw.get("config"), extra=raw.get("extra", {})))
    return raw
