"""The test processes' library caches (tests/libcaches.py) answer as the libraries do, and only share what is alike.

They also fail here, by name, when a library upgrade moves what they rely on.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import boto3
import botocore.compat
import botocore.hooks
import botocore.session
import errbot.backend_plugin_manager
import errbot.plugin_manager
import errbot.utils
import libcaches
from moto.core.loaders import create_loader as moto_loader


def endpoints(session: botocore.session.Session) -> object:
    return session.get_component("data_loader").load_data("endpoints")


def test_sessions_configured_alike_parse_each_file_once() -> None:
    libcaches.install()  # conftest installed them: nothing more happens
    first, second = botocore.session.Session(), botocore.session.Session()
    assert first.get_component("data_loader") is not second.get_component("data_loader")
    assert endpoints(first) is endpoints(second)
    assert first.get_service_model("emr").service_name == "emr"


def test_loaders_configured_differently_keep_their_own_cache() -> None:
    plain = botocore.session.Session().get_component("data_loader")
    with_boto3 = boto3.Session()._loader  # boto3 adds its own data path to its session's loader
    moto = moto_loader()  # moto's loader merges its own extras into the models
    assert plain.search_paths != with_boto3.search_paths
    assert plain.load_data("endpoints") is not with_boto3.load_data("endpoints")
    assert plain.load_service_model("emr", "service-2") is not moto.load_service_model("emr", "service-2")


def test_the_handler_check_answers_as_botocore_does() -> None:
    assert botocore.hooks.accepts_kwargs is not botocore.compat.accepts_kwargs  # the cached check is in place

    def with_kwargs(a: int, **kwargs: object) -> None: ...

    def without(a: int) -> None: ...

    class Handlers:
        def method(self, **kwargs: object) -> None: ...

    for func in (with_kwargs, without, Handlers().method, print, lambda **kw: None):
        for _ in range(2):  # the first answer is computed, the second comes from the cache
            assert botocore.hooks.accepts_kwargs(func) == botocore.compat.accepts_kwargs(func)
    assert "accepts_kwargs(func)" in inspect.getsource(botocore.hooks.BaseEventHooks._verify_accept_kwargs)


def test_errbot_s_entry_points_are_the_scan_s() -> None:
    for module in (errbot.backend_plugin_manager, errbot.plugin_manager):
        assert module.entry_point_plugins is not errbot.utils.entry_point_plugins  # the cached scan is in place
        for group in ("errbot.backend_plugins", "errbot.plugins"):
            assert sorted(module.entry_point_plugins(group)) == sorted(errbot.utils.entry_point_plugins(group))
    paths = errbot.plugin_manager.entry_point_plugins("errbot.backend_plugins")
    paths.append("/elsewhere")  # a caller may change the list it got: the next caller gets its own
    assert "/elsewhere" not in errbot.plugin_manager.entry_point_plugins("errbot.backend_plugins")


def test_moto_s_module_list_is_the_listing_s() -> None:
    import moto.backends

    package = Path(moto.backends.__file__).parent
    listing = sorted(entry.name for entry in package.iterdir() if entry.is_dir() and not entry.name.startswith("__"))
    assert moto.backends.list_of_moto_modules() is moto.backends.list_of_moto_modules()  # read once, kept
    assert list(moto.backends.list_of_moto_modules()) == listing
    assert "list_of_moto_modules" in inspect.getsource(moto.moto_server.werkzeug_app.DomainDispatcherApplication)
