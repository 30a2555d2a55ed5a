"""The four commands end to end: Errbot's test backend, moto's server, two accounts."""

from __future__ import annotations

from conftest import Chat

from demo.emulator import Emulator, Seeded


def test_status_lists_the_managed_cluster_only(chat: Chat, seeded: Seeded) -> None:
    reply = chat.say("!emr status")
    assert "analytics" in reply and seeded.managed_id in reply
    assert "etl-nightly" not in reply and seeded.unmanaged_id not in reply
    assert "WAITING" in reply
    assert "held by nobody" in reply
    assert "terminated at 10:30 unless someone locks it (idle since 10:00)" in reply


def test_lock_unlock_round_trip(chat: Chat, emulator: Emulator, seeded: Seeded) -> None:
    reply = chat.say("!emr lock spark job on logs", user="alice")
    assert reply.startswith("🔒 alice holds analytics")
    assert "spark job on logs" in reply
    assert "bob" not in reply
    reply = chat.say("!emr lock analytics", user="bob")
    assert "alice" in reply and "bob" in reply
    status = chat.say("!emr status")
    assert "alice since 10:00" in status and "bob since 10:00" in status
    reply = chat.say("!emr unlock", user="alice")
    assert "Still held by bob" in reply
    reply = chat.say("!emr unlock", user="bob")
    assert "Nobody holds it now: terminated at 10:30 unless someone locks it" in reply
    assert emulator.cluster_state(seeded.managed_id) == "WAITING"
