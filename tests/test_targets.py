"""Targets (DESIGN §17): TARGETS_FILE read and refused with the file, the target and the key named;
without it the part-one keys make the one target TARGET_NAME; MAX_PARALLEL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from demo.emulator import ACCOUNT_B, EXTERNAL_ID
from emrchatops.domain.errors import ConfigError
from emrchatops.domain.settings import Settings, TagSelector, from_mapping
from emrchatops.domain.targets import Target, TargetsError, load_targets, single_target

ROOT = Path(__file__).resolve().parent.parent
ARN = "arn:aws:iam::210987654321:role/cre"

# DESIGN §17's example, whole.
DESIGN_EXAMPLE = """
[defaults]                      # any target key; each target may override it
role = "cre"                    # a role name in the target's account, or a full role ARN
external_id = "a-shared-external-id"
regions = ["ap-northeast-1"]
cluster_tag = "emr-chatops=true"
notify = "#emr-alerts"

[[targets]]
name = "game-a"                 # [a-z0-9-]{1,32}, unique: how people write it
account = "210987654321"
regions = ["ap-northeast-1", "us-west-2"]
notify = "#game-a"              # this target's warnings and notices
admins = ["alice"]              # optional: may --force and unlock --user here, besides BOT_ADMINS
templates_dir = "templates/game-a"   # optional: what !emr start may start here

[[targets]]
name = "game-b"
account = "109876543210"
role = "arn:aws:iam::109876543210:role/path/emr-bot"
"""

TEMPLATE = {
    "Name": "analytics",
    "ReleaseLabel": "emr-7.1.0",
    "Instances": {"MasterInstanceType": "m5.xlarge", "InstanceCount": 1},
    "JobFlowRole": "EMR_EC2_DefaultRole",
    "ServiceRole": "EMR_DefaultRole",
}


def write(folder: Path, text: str, *, templates: bool = True) -> Path:
    if templates:
        (folder / "templates" / "game-a").mkdir(parents=True, exist_ok=True)
        (folder / "templates" / "game-a" / "analytics.json").write_text(json.dumps(TEMPLATE))
    path = folder / "targets.toml"
    path.write_text(text)
    return path


def test_the_design_example_is_read_with_defaults_and_overrides(tmp_path: Path) -> None:
    a, b = load_targets(write(tmp_path, DESIGN_EXAMPLE))
    assert a == Target(
        name="game-a",
        account="210987654321",
        role_arn="arn:aws:iam::210987654321:role/cre",  # a role name: in the target's own account
        external_id="a-shared-external-id",
        regions=("ap-northeast-1", "us-west-2"),
        cluster_tag=TagSelector("emr-chatops", "true"),
        notify="#game-a",
        admins=("alice",),
        templates_dir=str(tmp_path / "templates" / "game-a"),  # relative to the file
        templates=a.templates,
    )
    assert [t.name for t in a.templates] == ["analytics"]
    assert b == Target(
        name="game-b",
        account="109876543210",
        role_arn="arn:aws:iam::109876543210:role/path/emr-bot",
        external_id="a-shared-external-id",
        regions=("ap-northeast-1",),
        cluster_tag=TagSelector("emr-chatops", "true"),
        notify="#emr-alerts",
        admins=(),
        templates_dir=None,
    )
    assert a.session_key == ("arn:aws:iam::210987654321:role/cre", "a-shared-external-id")


def test_optional_values_may_be_switched_off_per_target(tmp_path: Path) -> None:
    text = DESIGN_EXAMPLE + 'external_id = "off"\nnotify = ""\ncluster_tag = "team"\n'
    _, b = load_targets(write(tmp_path, text))
    assert (b.external_id, b.notify, b.cluster_tag) == (None, None, TagSelector("team", None))


GAME_A = 'name = "game-a"\naccount = "210987654321"\nrole = "cre"\nregions = ["ap-northeast-1"]\n'
GAME_B = 'name = "game-b"\naccount = "109876543210"\nrole = "cre"\nregions = ["ap-northeast-1"]\n'


def targets(*tables: str, defaults: str = "") -> str:
    head = f"[defaults]\n{defaults}\n" if defaults else ""
    return head + "".join(f"[[targets]]\n{table}\n" for table in tables)


def swap(table: str, key: str, line: str | None) -> str:
    """*table* with the line of *key* replaced by *line* (removed when None)."""
    lines = [x for x in table.splitlines() if not x.startswith(f"{key} =")]
    return "\n".join(lines + ([line] if line else [])) + "\n"


@pytest.mark.parametrize(
    ("text", "where", "problem"),
    [
        # the example of the brief, word for word
        (
            targets(swap(GAME_A, "account", 'account = "12ab"')),
            "target game-a, key account",
            "expected 12 digits, got '12ab'",
        ),
        (
            targets(swap(GAME_A, "account", "account = 210987654321")),
            "target game-a, key account",
            "expected 12 digits in quotes",
        ),
        (targets(GAME_A + 'colour = "blue"\n'), "target game-a, key colour", "unknown key (known: name, account, role"),
        (targets(GAME_A, defaults='colour = "blue"'), "[defaults], key colour", "unknown key"),
        (targets(GAME_A, defaults='name = "x"'), "[defaults], key name", "each target's own"),
        ("top = 1\n" + targets(GAME_A), "key top", "unknown key (known: defaults, targets)"),
        ("", "key targets", "no [[targets]]"),
        ('targets = "game-a"\n', "key targets", "an array of tables"),
        ("[defaults]\nregions = 5\n" + targets(GAME_A), "[defaults], key regions", "expected a list"),
        (targets(GAME_A, GAME_A), "target game-a (#2), key name", "also target #1's name"),
        (targets(swap(GAME_A, "name", 'name = "Game-A"')), "target #1, key name", "[a-z0-9-]{1,32}"),
        (targets(swap(GAME_A, "name", f'name = "{"a" * 33}"')), "target #1, key name", "[a-z0-9-]{1,32}"),
        (targets(swap(GAME_A, "name", 'name = "-force"')), "target #1, key name", "begin with a letter or digit"),
        (targets(swap(GAME_A, "name", 'name = "2024"')), "target #1, key name", "read as DAYS"),
        (targets(swap(GAME_A, "name", 'name = "j-abcdefgh12"')), "target #1, key name", "read as a cluster id"),
        (targets(swap(GAME_A, "name", None)), "target #1, key name", "required"),
        (targets(swap(GAME_A, "account", None)), "target game-a, key account", "required"),
        (targets(swap(GAME_A, "role", None)), "target game-a, key role", "required"),
        (targets(swap(GAME_A, "regions", None)), "target game-a, key regions", "required"),
        (
            targets(swap(GAME_A, "role", 'role = "arn:aws:iam::109876543210:role/cre"')),
            "target game-a, key role",
            "account 109876543210, not the target's account 210987654321",
        ),
        (
            targets(GAME_A, swap(GAME_B, "role", None), defaults='role = "arn:aws:iam::210987654321:role/cre"'),
            "target game-b, key role",
            "(from [defaults])",
        ),
        (targets(swap(GAME_A, "role", 'role = "arn:aws:iam::2109:role/cre"')), "target game-a, key role", "role ARN"),
        (targets(swap(GAME_A, "role", 'role = "my role"')), "target game-a, key role", "neither a role name"),
        (targets(swap(GAME_A, "regions", 'regions = ["tokyo"]')), "target game-a, key regions", "'tokyo' is not"),
        (targets(swap(GAME_A, "regions", "regions = []")), "target game-a, key regions", "at least one region"),
        (
            targets(swap(GAME_A, "regions", 'regions = ["us-west-2", "us-west-2"]')),
            "target game-a, key regions",
            "'us-west-2' twice",
        ),
        (targets(swap(GAME_A, "regions", 'regions = "us-west-2"')), "target game-a, key regions", "expected a list"),
        (targets(GAME_A + 'external_id = "x"\n'), "target game-a, key external_id", "2–1224 characters"),
        (targets(GAME_A + 'cluster_tag = "=x"\n'), "target game-a, key cluster_tag", "not key=value, key, or *"),
        (targets(GAME_A + "notify = 3\n"), "target game-a, key notify", "expected text, got int"),
        (targets(GAME_A + 'admins = "alice"\n'), "target game-a, key admins", "expected a list"),
        (targets(GAME_A + 'admins = ["alice", ""]\n'), "target game-a, key admins", "an empty name"),
        (targets(GAME_A + 'templates_dir = "nowhere"\n'), "target game-a, key templates_dir", "no such directory"),
        # Two targets that would manage the same clusters: one account and region, tags that can both match.
        (
            targets(GAME_A, swap(GAME_A, "name", 'name = "game-a2"')),
            "target game-a2, key regions",
            "ap-northeast-1 of account 210987654321 is also target game-a's",
        ),
        (
            targets(
                GAME_A + 'cluster_tag = "team=a"\n', swap(GAME_A, "name", 'name = "b"') + 'cluster_tag = "owner=b"\n'
            ),
            "target b, key regions",
            "is also target game-a's",
        ),
    ],
)
def test_a_bad_targets_file_is_refused_naming_the_file_the_target_and_the_key(
    tmp_path: Path, text: str, where: str, problem: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(TargetsError) as caught:
        load_targets(path)
    message = str(caught.value)
    assert isinstance(caught.value, ConfigError) and caught.value.key == "TARGETS_FILE"
    assert message.startswith(f"EMR config TARGETS_FILE: {path}, {where}: "), message
    assert problem in message, message


def test_the_brief_s_example_message_word_for_word(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, targets(swap(GAME_A, "account", 'account = "12ab"')))
    with pytest.raises(ConfigError) as caught:
        load_targets("targets.toml")
    assert str(caught.value) == (
        "EMR config TARGETS_FILE: targets.toml, target game-a, key account: expected 12 digits, got '12ab'"
    )
    assert (caught.value.file, caught.value.target, caught.value.target_key) == ("targets.toml", "game-a", "account")


def test_one_account_may_hold_two_targets_that_cannot_manage_the_same_cluster(tmp_path: Path) -> None:
    # Another region, or the same tag key with another value: no cluster is both targets'.
    other_region = swap(GAME_A, "name", 'name = "game-a-us"').replace("ap-northeast-1", "us-west-2")
    other_value = swap(GAME_A, "name", 'name = "team-b"') + 'cluster_tag = "team=b"\n'
    text = targets(GAME_A + 'cluster_tag = "team=a"\n', other_region, other_value)
    assert [t.name for t in load_targets(write(tmp_path, text))] == ["game-a", "game-a-us", "team-b"]


@pytest.mark.parametrize(
    ("text", "problem"),
    [("[[targets]\n", "is not TOML"), (None, "cannot be read"), (b"\xff\xfe", "is not TOML")],
)
def test_an_unreadable_file_is_refused_naming_it(tmp_path: Path, text: str | bytes | None, problem: str) -> None:
    path = tmp_path / "targets.toml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    elif text is not None:
        path.write_text(text)
    with pytest.raises(TargetsError, match=f"^EMR config TARGETS_FILE: {path}: {problem}"):
        load_targets(path)


def test_a_bad_template_of_a_target_is_refused_naming_the_target(tmp_path: Path) -> None:
    path = write(tmp_path, DESIGN_EXAMPLE)
    (tmp_path / "templates" / "game-a" / "tagged.json").write_text(
        json.dumps({**TEMPLATE, "Name": "tagged", "Tags": [{"Key": "emr-chatops", "Value": "true"}]})
    )
    with pytest.raises(TargetsError, match=r"target game-a, key templates_dir: .*tagged\.json"):
        load_targets(path)


# -- settings ------------------------------------------------------------------------------------


def test_without_a_file_the_part_one_keys_make_the_one_target_main(tmp_path: Path) -> None:
    settings = from_mapping(
        {"ROLE_ARN": ARN, "EXTERNAL_ID": EXTERNAL_ID, "REGION": "us-west-2", "NOTIFY_CHANNEL": "#emr-alerts"}
    )
    assert settings.targets == (single_target(settings),)
    assert single_target(settings) == Target(
        name="main",
        account=ACCOUNT_B,
        role_arn=ARN,
        external_id=EXTERNAL_ID,
        regions=("us-west-2",),
        cluster_tag=TagSelector("emr-chatops", "true"),
        notify="#emr-alerts",
        admins=(),
        templates_dir=None,
    )
    assert from_mapping({"ROLE_ARN": ARN, "TARGET_NAME": "analytics-team"}).targets[0].name == "analytics-team"
    assert Settings(role_arn=ARN).targets[0].name == "main"
    assert (settings.targets_file, settings.target_name, settings.max_parallel) == (None, "main", 8)


def test_the_one_target_carries_the_templates(tmp_path: Path) -> None:
    write(tmp_path, "")
    folder = tmp_path / "templates" / "game-a"
    [target] = from_mapping({"ROLE_ARN": ARN, "TEMPLATES_DIR": str(folder)}).targets
    assert (target.templates_dir, [t.name for t in target.templates]) == (str(folder), ["analytics"])


def test_a_targets_file_gives_the_targets(tmp_path: Path) -> None:
    path = write(tmp_path, DESIGN_EXAMPLE)
    settings = from_mapping({"TARGETS_FILE": str(path), "MAX_PARALLEL": "16"})
    assert [t.name for t in settings.targets] == ["game-a", "game-b"]
    assert settings.targets == load_targets(path)
    assert (settings.targets_file, settings.max_parallel) == (str(path), 16)
    assert from_mapping({"TARGETS_FILE": "off", "ROLE_ARN": ARN}).targets_file is None


@pytest.mark.parametrize(
    "key", ["ROLE_ARN", "EXTERNAL_ID", "REGION", "CLUSTER_TAG", "NOTIFY_CHANNEL", "TEMPLATES_DIR", "TARGET_NAME"]
)
def test_a_part_one_key_beside_a_targets_file_is_refused_by_name(tmp_path: Path, key: str) -> None:
    path = write(tmp_path, DESIGN_EXAMPLE)
    with pytest.raises(ConfigError) as caught:
        from_mapping({"TARGETS_FILE": str(path), key: "something"})
    assert caught.value.key == key
    assert str(caught.value).startswith(f"EMR config {key}: set beside TARGETS_FILE"), str(caught.value)


@pytest.mark.parametrize(
    ("raw", "key", "problem"),
    [
        ({"ROLE_ARN": ARN, "MAX_PARALLEL": "0"}, "MAX_PARALLEL", "out of range (1–64)"),
        ({"ROLE_ARN": ARN, "MAX_PARALLEL": "65"}, "MAX_PARALLEL", "out of range (1–64)"),
        ({"ROLE_ARN": ARN, "MAX_PARALLEL": "eight"}, "MAX_PARALLEL", "is not a number"),
        ({"ROLE_ARN": ARN, "TARGET_NAME": "Main"}, "TARGET_NAME", "[a-z0-9-]{1,32}"),
        ({"TARGETS_FILE": "/nowhere/targets.toml"}, "TARGETS_FILE", "/nowhere/targets.toml: cannot be read"),
        ({}, "ROLE_ARN", "required"),
    ],
)
def test_the_new_keys_are_validated_naming_the_key(raw: dict[str, object], key: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        from_mapping(raw)
    assert caught.value.key == key and problem in str(caught.value), str(caught.value)


def test_max_parallel_takes_its_bounds() -> None:
    assert from_mapping({"ROLE_ARN": ARN, "MAX_PARALLEL": 1}).max_parallel == 1
    assert from_mapping({"ROLE_ARN": ARN, "MAX_PARALLEL": "64"}).max_parallel == 64


# -- the demo's targets ------------------------------------------------------------------------------


def test_the_demo_targets_file_is_valid_and_as_the_design_says() -> None:
    game_a, game_b = load_targets(ROOT / "demo" / "targets.toml")
    assert (game_a.name, game_a.account, game_a.regions) == ("game-a", ACCOUNT_B, ("ap-northeast-1",))
    assert game_b.name == "game-b" and game_b.account not in (ACCOUNT_B, game_a.account)
    assert game_b.regions == ("ap-northeast-1", "us-west-2")
    assert game_a.notify != game_b.notify and None not in (game_a.notify, game_b.notify)
    assert game_a.external_id == game_b.external_id == EXTERNAL_ID  # the emulator's roles' trust
    assert [t.name for t in game_a.templates] == ["analytics"]
