"""The test processes' shared botocore model cache (tests/sharedmodels.py) shares only what one loader would."""

from __future__ import annotations

import boto3
import botocore.session
import sharedmodels
from moto.core.loaders import create_loader as moto_loader


def endpoints(session: botocore.session.Session) -> object:
    return session.get_component("data_loader").load_data("endpoints")


def test_sessions_configured_alike_parse_each_file_once() -> None:
    sharedmodels.install()  # idempotent: conftest installed it
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
