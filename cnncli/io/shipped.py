"""An image's bytes read by someone else: a cluster's client reads each image (``--ship-bytes``) and
sends its bytes to the worker that runs it, where loading the image takes them instead of the path.

The bytes are set around one image's job (``image_bytes``) and looked up by the image's name
(``shipped_bytes``), in a context variable: each of a worker's threads sees only its own image.
"""

from __future__ import annotations

import contextlib
from contextvars import ContextVar
from typing import Iterator

_SHIPPED: ContextVar[tuple[str, bytes] | None] = ContextVar("cnn_shipped_image", default=None)


@contextlib.contextmanager
def image_bytes(source: str, data: bytes) -> Iterator[None]:
    """While inside, the image named ``source`` is ``data`` (its file is not opened)."""
    token = _SHIPPED.set((source, data))
    try:
        yield
    finally:
        _SHIPPED.reset(token)


def shipped_bytes(source: str) -> bytes | None:
    """The bytes shipped for ``source``, or None when it is to be read from its file as usual."""
    shipped = _SHIPPED.get()
    return shipped[1] if shipped is not None and shipped[0] == source else None
