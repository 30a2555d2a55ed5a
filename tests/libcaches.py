"""Process-wide caches, for the tests only, of what libraries read again for every new instance.

Each bot the tests start builds new botocore and boto3 sessions and a new Errbot; the libraries
then read the same installed, read-only data again. Nothing the bot does changes: its sessions,
clients, requests, credentials, plugins and storage are the same; only the re-reading is saved.

* **botocore's models.** botocore parses its JSON data (``endpoints.json`` is 1.2 MB; each
  service model) once per *session*: its :class:`botocore.loaders.Loader` caches what it loaded
  on the instance (``instance_cache`` reads and writes ``self._cache``). Here every loader with
  the same class, search paths and extras types shares one cache: to botocore it is as if those
  sessions shared one loader — as all the clients of one session already share its data.
  (botocore's endpoint resolver writes the keys it resolved back into ``endpoints.json``'s data,
  the same values each time; a shared cache sees that memo as one session's later clients do.)
  A loader configured differently (``AWS_DATA_PATH``, boto3's extra ``data`` path, moto's loader
  with its extras) gets a cache of its own. Before this, a third of the suite's CPU time was
  ``json.loads`` of the same files.
* **botocore's handler check.** A new session registers ~130 event handlers, and botocore checks
  each accepts ``**kwargs`` with :func:`inspect.getfullargspec`; the answer for a function never
  changes, so it is kept per function (weakly: per-session closures go with their session).
* **moto's module list.** moto's server finds the service of each request among its modules with
  ``list_of_moto_modules()``: a listing of its package directory and a ``stat`` of each of its
  ~180 entries, twice a request (a third of moto's own time for a ``ListClusters``). The installed
  package does not change during a test run, so the list is read once.
* **Errbot's entry points.** Each bot start scans every installed distribution's entry points
  and the files of those in the ``errbot.*`` groups (three scans, ~17 ms); the installed
  packages do not change during a test run, so each group's answer is kept.

:func:`install` runs once per test process (conftest); it fails loudly if a library upgrade moves
what it relies on (tests/test_libcaches.py checks the same).
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable
from types import FunctionType
from typing import Any

import botocore.compat
import botocore.hooks
from botocore import loaders

_LOADER_CACHES: dict[tuple[Any, ...], dict[Any, Any]] = {}


def _shared_cache(loader: loaders.Loader) -> dict[Any, Any]:
    key = (type(loader), tuple(loader.search_paths), tuple(loader.extras_types))
    return _LOADER_CACHES.setdefault(key, {})


def _share_loader_caches() -> None:
    probe = loaders.Loader()
    # instance_cache's contract: the instance provides ``self._cache`` (a dict).
    assert isinstance(probe.__dict__.get("_cache"), dict), "botocore's Loader no longer caches in self._cache"
    loaders.Loader._cache = property(_shared_cache, lambda loader, value: None)  # type: ignore[assignment]


_KWARGS: weakref.WeakKeyDictionary[FunctionType, bool] = weakref.WeakKeyDictionary()


def _accepts_kwargs(func: Callable[..., Any], original: Callable[[Any], Any] = botocore.compat.accepts_kwargs) -> Any:
    # A plain function, or a bound method's (its **kwargs are the function's): kept by identity.
    target = getattr(func, "__func__", func)
    if not isinstance(target, FunctionType):
        return original(func)
    if target not in _KWARGS:
        _KWARGS[target] = original(func)
    return _KWARGS[target]


def _cache_handler_checks() -> None:
    assert botocore.hooks.accepts_kwargs is botocore.compat.accepts_kwargs, "botocore's hooks no longer check with it"
    botocore.hooks.accepts_kwargs = _accepts_kwargs


def _cache_errbot_entry_points() -> None:
    import errbot.backend_plugin_manager
    import errbot.plugin_manager
    import errbot.utils

    original = errbot.utils.entry_point_plugins
    cached = functools.cache(lambda group: tuple(original(group)))

    def entry_point_plugins(group: str) -> list[str]:
        return list(cached(group))

    for module in (errbot.backend_plugin_manager, errbot.plugin_manager):
        # Errbot imports the name into each module that scans (``from .utils import entry_point_plugins``).
        assert module.entry_point_plugins is original, f"{module.__name__} no longer uses errbot.utils' scan"
        module.entry_point_plugins = entry_point_plugins


_installed = False


def _cache_moto_modules() -> None:
    import moto.backends
    import moto.moto_server.werkzeug_app

    original = moto.backends.list_of_moto_modules
    modules = tuple(original())
    # The server looks the function up on moto.backends at each request (``backends.list_of_moto_modules()``).
    assert moto.moto_server.werkzeug_app.backends is moto.backends, "moto's server no longer asks moto.backends"
    moto.backends.list_of_moto_modules = lambda: modules


def install() -> None:
    """Install the four caches in this process (once; later calls do nothing)."""
    global _installed
    if not _installed:
        _share_loader_caches()
        _cache_handler_checks()
        _cache_errbot_entry_points()
        _cache_moto_modules()
        _installed = True
