"""The cross-account session: one AssumeRole, stored, reused, renewed, retried."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from pathlib import Path

import boto3
import pytest

from conftest import Chat, Clock, emr_config
from demo.emulator import BOT_KEYS, EXTERNAL_ID, REGION, ROLE_ARN, Emulator, Seeded
from emrchatops.aws.crossaccount import CrossAccountSession, MemoryTokenStore, RoleTarget
from emrchatops.domain.errors import AccessDeniedError, AwsUnreachableError


def target(emulator: Emulator, **overrides: object) -> RoleTarget:
    values: dict[str, object] = {
        "role_arn": ROLE_ARN,
        "region": REGION,
        "external_id": EXTERNAL_ID,
        "endpoint_url": emulator.url,
    }
    values.update(overrides)
    return RoleTarget(**values)  # type: ignore[arg-type]


def test_one_assume_role_for_a_hundred_commands(chat: Chat, emulator: Emulator) -> None:
    for i in range(100):
        reply = chat.say("!emr status" if i % 2 else "!emr lock")
        assert not reply.startswith("✗"), reply
    assert emulator.count("AssumeRole") == 1


def test_a_restart_reuses_the_stored_token(chat: Chat, emulator: Emulator) -> None:
    chat.say("!emr status")
    token = chat.plugin.get("sts")
    chat.restart()
    assert chat.plugin.get("sts") == token
    chat.say("!emr lock")
    chat.restart()
    assert "alice" in chat.say("!emr status")
    assert emulator.count("AssumeRole") == 1


def test_a_token_near_expiry_is_renewed_once(chat: Chat, emulator: Emulator, clock: Clock) -> None:
    chat.say("!emr status")
    first = chat.plugin.get("sts")
    clock.advance(minutes=40)  # 20 minutes left of 60: still outside the 15-minute margin
    chat.say("!emr status")
    assert emulator.count("AssumeRole") == 1
    clock.advance(minutes=6)  # 14 minutes left: renew
    for _ in range(5):
        chat.say("!emr status")
    assert emulator.count("AssumeRole") == 2
    renewed = chat.plugin.get("sts")
    assert renewed["access_key"] != first["access_key"]
    assert datetime.fromisoformat(renewed["expiry_time"]) > datetime.fromisoformat(first["expiry_time"])


def test_an_expired_token_after_a_long_downtime_is_replaced(
    tmp_path: Path, emulator: Emulator, seeded: Seeded, clock: Clock
) -> None:
    bot = Chat(tmp_path / "data", emr_config(emulator), clock).start()
    try:
        bot.say("!emr status")
        bot.stop()
        clock.advance(hours=3)
        bot.start()
        assert "analytics" in bot.say("!emr status")
        assert emulator.count("AssumeRole") == 2
    finally:
        bot.stop()


def test_concurrent_callers_share_one_assume_role(emulator: Emulator, seeded: Seeded) -> None:
    session = CrossAccountSession(target(emulator), MemoryTokenStore())
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(5):
                session.call("emr", "list_clusters", "elasticmapreduce:ListClusters")
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert emulator.count("AssumeRole") == 1
    assert emulator.count("ListClusters") == 100


def test_an_invalid_token_is_dropped_reassumed_and_the_call_retried_once(emulator: Emulator, seeded: Seeded) -> None:
    keys = emulator.create_bot_user()
    emulator.set_iam_enforcement(True)
    store = MemoryTokenStore()
    # A token that looks valid for hours but that AWS no longer knows (revoked, or from another emulator).
    store.save(
        {
            "role_arn": ROLE_ARN,
            "access_key": "ASIAREVOKEDREVOKED01",
            "secret_key": "revoked",
            "token": "revoked",
            "expiry_time": (datetime.now().astimezone() + timedelta(hours=5)).isoformat(),
        }
    )
    base = boto3.Session(**keys)
    session = CrossAccountSession(target(emulator), store, base_session=base)
    emulator.reset_counts()
    clusters = session.call("emr", "list_clusters", "elasticmapreduce:ListClusters")["Clusters"]
    assert {c["Name"] for c in clusters} == {"analytics", "etl-nightly"}
    assert emulator.count("AssumeRole") == 1
    assert emulator.count("ListClusters") == 2  # the refused call, and its one retry
    assert store.load() is not None and store.load()["access_key"] != "ASIAREVOKEDREVOKED01"  # type: ignore[index]


def test_assume_role_denied_names_the_action(emulator: Emulator, seeded: Seeded) -> None:
    keys = emulator.create_bot_user(
        policy={"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*"}]}
    )
    emulator.set_iam_enforcement(True)
    session = CrossAccountSession(target(emulator), MemoryTokenStore(), base_session=boto3.Session(**keys))
    with pytest.raises(AccessDeniedError, match=r"AWS denied sts:AssumeRole"):
        session.call("emr", "list_clusters", "elasticmapreduce:ListClusters")


def test_unreachable_endpoint_is_a_clear_error(emulator: Emulator) -> None:
    session = CrossAccountSession(
        target(emulator, endpoint_url="http://127.0.0.1:9"), MemoryTokenStore(), base_session=boto3.Session(**BOT_KEYS)
    )
    with pytest.raises(AwsUnreachableError, match=r"AWS unreachable: sts:AssumeRole"):
        session.call("emr", "list_clusters", "elasticmapreduce:ListClusters")


def test_every_session_and_client_share_one_botocore_data_loader() -> None:
    """The service models are parsed once per process, not once per session (66–79 ms each)."""
    from emrchatops.aws.crossaccount import shared_loader

    first = CrossAccountSession(
        RoleTarget(role_arn="arn:aws:iam::210987654321:role/cre", region="ap-northeast-1"), MemoryTokenStore()
    )
    second = CrossAccountSession(
        RoleTarget(role_arn="arn:aws:iam::109876543210:role/cre", region="us-west-2"), MemoryTokenStore()
    )
    loaders = {id(s._session.get_component("data_loader")) for s in (first, second)}
    loaders |= {id(s._base._session.get_component("data_loader")) for s in (first, second)}
    assert loaders == {id(shared_loader())}
