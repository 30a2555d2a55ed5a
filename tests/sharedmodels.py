"""One botocore model cache per test process, shared by every botocore session (tests only).

botocore parses its JSON data (``endpoints.json`` is 1.2 MB; each service model) once per
*session*: its :class:`botocore.loaders.Loader` caches what it loaded on the instance
(``instance_cache`` reads and writes ``self._cache``). The plugin makes a new session per
bot start, per re-assumed token and per storage plugin, so the suite spent a third of its
CPU time in ``json.loads`` of the same files.

Here every loader with the same class, search paths and extras types shares one cache:
to botocore it is as if those sessions shared one loader — which is how botocore already
shares the loaded data between all clients of one session. (botocore's endpoint resolver
writes the keys it resolved back into ``endpoints.json``'s data, the same values each time;
a shared cache sees that memo as one session's later clients do.)
A loader configured differently (``AWS_DATA_PATH``, boto3's extra ``data`` path, moto's own
loader with its extras) gets a cache of its own. Nothing the bot does is changed: the
sessions, clients, requests and credentials are the same; only parsing is not repeated.
"""

from __future__ import annotations

from typing import Any

from botocore import loaders

_CACHES: dict[tuple[Any, ...], dict[Any, Any]] = {}


def _shared_cache(loader: loaders.Loader) -> dict[Any, Any]:
    key = (type(loader), tuple(loader.search_paths), tuple(loader.extras_types))
    return _CACHES.setdefault(key, {})


def install() -> None:
    """Route every Loader's ``_cache`` to the cache shared by its configuration (idempotent)."""
    if isinstance(loaders.Loader.__dict__.get("_cache"), property):
        return
    probe = loaders.Loader()
    # instance_cache's contract: the instance provides ``self._cache`` (a dict). Fail here, loudly,
    # if a botocore upgrade changes that, rather than silently parsing every file again.
    assert isinstance(probe.__dict__.get("_cache"), dict), "botocore's Loader no longer caches in self._cache"
    loaders.Loader._cache = property(_shared_cache, lambda loader, value: None)  # type: ignore[assignment]
