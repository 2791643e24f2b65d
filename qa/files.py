"""Small file helpers shared by the index, the embedder graph and the reader weights."""

from __future__ import annotations

import hashlib
from pathlib import Path

from .errors import ModelError, show_path


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes, read 1 MB at a time."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_file(path: Path, expected: object, what: str, remedy: str) -> None:
    """ModelError unless ``path`` is a file whose sha256 is ``expected`` (from a model card);
    ``what`` names the file for people ("reader weights"), ``remedy`` says what to do."""
    plural = what.endswith("s")
    if not path.is_file():
        raise ModelError(f"{what} {show_path(path)} {'are' if plural else 'is'} missing: {remedy}")
    digest = sha256_file(path)
    if digest != expected:
        raise ModelError(
            f"{what} {show_path(path)} {'do' if plural else 'does'} not match the model card (sha256 {digest[:12]}…, "
            f"card says {str(expected)[:12]}…): {remedy}"
        )
