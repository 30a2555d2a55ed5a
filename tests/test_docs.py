"""The docs say what the code does (issue 23): the configuration reference is generated from
``emrchatops.domain.reference`` and held to the settings' own definitions."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from datetime import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from emrchatops.domain import reference, settings
from emrchatops.domain.settings import Settings, TagSelector

ROOT = Path(__file__).resolve().parent.parent


def shown(value: object) -> str:
    """A Settings default as the reference's *default* column writes it."""
    if value is None:
        return "none"
    if isinstance(value, time):
        return f"`{value:%H:%M}`"
    if isinstance(value, ZoneInfo):
        return f"`{value.key}`"
    if isinstance(value, TagSelector | str):
        return f"`{value}`"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


# -- the configuration reference ------------------------------------------------------------------------


def test_the_configuration_reference_is_up_to_date() -> None:
    assert (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8") == reference.render(), (
        "docs/configuration.md is stale: run `make docs` "
        "(PYTHONPATH=plugins/emr python -m emrchatops.domain.reference) and commit it"
    )


def test_check_mode_fails_on_a_stale_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "configuration.md"
    assert reference.main(["--check", "--out", str(out)]) == 1
    assert reference.main(["--out", str(out)]) == 0
    assert reference.main(["--check", "--out", str(out)]) == 0
    out.write_text(out.read_text().replace("`EMR_IDLE_MINUTES` | 30", "`EMR_IDLE_MINUTES` | 31"))
    assert reference.main(["--check", "--out", str(out)]) == 1
    assert "stale" in capsys.readouterr().err


def test_every_key_the_settings_accept_is_in_the_reference_and_no_other() -> None:
    assert [key.name for key in reference.EMR_KEYS] == list(settings.KEYS)


def test_every_plain_default_is_the_settings_dataclass_default() -> None:
    fields = Settings.__dataclass_fields__
    plain = [key for key in reference.EMR_KEYS if key.field is not None]
    assert len(plain) >= 20
    for key in plain:
        assert key.field in fields, key.name
        assert shown(fields[key.field].default) == key.default, key.name


def test_the_off_words_are_the_settings_off_words() -> None:
    written = set(re.findall(r"`(\w+)`", reference.OFF)) | ({""} if "empty" in reference.OFF else set())
    assert written == settings.OFF_WORDS


def test_every_variable_config_py_reads_is_in_the_reference_and_no_other() -> None:
    source = (ROOT / "config.py").read_text(encoding="utf-8")
    read = set(re.findall(r"""(?:_env|_flag|os\.environ\.get)\(\s*["']([A-Z_]+)["']""", source))
    read |= set(re.findall(r"""os\.environ\[["']([A-Z_]+)["']\]""", source))
    assert read, "config.py's variables were not found"
    assert {key.name for key in reference.PROCESS_KEYS} == read


# -- links and snippets in README.md and docs/*.md ------------------------------------------------------

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^(\s*)(`{3,})(\w*)\s*$")
SHELL = {"sh", "bash", "console"}
NOT_RUN = re.compile(r"^\s*<!-- not run: \S.* -->\s*$")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")

#: Each snippet line (comments stripped) that a test runs, and the command it runs: `make TARGET` as a dry
#: run (`make -n`), the rest as written with this interpreter.
RUN = {
    "make demo": ["make", "-n", "demo"],
    "make test": ["make", "-n", "test"],
    "make check": ["make", "-n", "check"],
    "make docs": ["make", "-n", "docs"],
    "PYTHONPATH=plugins/emr python -m emrchatops.domain.reference --check": [
        sys.executable,
        "-m",
        "emrchatops.domain.reference",
        "--check",
    ],
}


@dataclass(frozen=True)
class Snippet:
    file: Path
    line: int  # of the opening fence, 1-based
    language: str
    marked: bool  # a `<!-- not run: REASON -->` line right before the fence
    commands: tuple[str, ...]


def snippets(path: Path) -> list[Snippet]:
    found: list[Snippet] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        fence, language, start = match.group(2), match.group(3), i
        i += 1
        body: list[str] = []
        while i < len(lines) and lines[i].strip() != fence:
            body.append(lines[i])
            i += 1
        i += 1
        commands = tuple(
            command
            for command in (line.split(" #")[0].strip() for line in body)
            if command and not command.startswith("#")
        )
        marked = start > 0 and bool(NOT_RUN.match(lines[start - 1]))
        found.append(Snippet(path, start + 1, language, marked, commands))
    return found


def shell_snippets() -> list[Snippet]:
    return [snippet for path in DOCS for snippet in snippets(path) if snippet.language in SHELL]


def anchors(path: Path) -> set[str]:
    """The #anchors GitHub makes of a file's headings: lower case, punctuation dropped, spaces to -, repeats -1 …"""
    seen: dict[str, int] = {}
    found: set[str] = set()
    in_code = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            in_code = not in_code
        if in_code or not line.startswith("#"):
            continue
        text = line.lstrip("#").strip()
        slug = re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def prose(path: Path) -> str:
    """The text without fenced code and inline code, where a link is a link."""
    kept: list[str] = []
    in_code = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            in_code = not in_code
            continue
        if not in_code:
            kept.append(re.sub(r"`[^`]*`", "", line))
    return "\n".join(kept)


def links() -> list[tuple[Path, str]]:
    return [(path, target) for path in DOCS for target in LINK.findall(prose(path))]


def test_the_docs_have_links_and_snippets_to_check() -> None:
    assert len(links()) >= 20
    assert len(shell_snippets()) >= 8


@pytest.mark.parametrize(("path", "target"), links(), ids=[f"{p.relative_to(ROOT)}:{t}" for p, t in links()])
def test_every_relative_link_resolves(path: Path, target: str) -> None:
    if re.match(r"^[a-z]+:", target):
        return  # https:, mailto:: not ours to check offline
    file, _, anchor = target.partition("#")
    resolved = (path.parent / file).resolve() if file else path
    assert resolved.exists(), f"{path.relative_to(ROOT)}: {target}: no such file"
    if anchor:
        assert resolved.suffix == ".md", f"{path.relative_to(ROOT)}: {target}: an anchor into a non-Markdown file"
        assert anchor in anchors(resolved), (
            f"{path.relative_to(ROOT)}: {target}: no heading makes #{anchor} in {resolved.name} "
            f"(there: {', '.join(sorted(anchors(resolved)))})"
        )


def test_every_shell_snippet_is_run_by_a_test_or_marked_why_not() -> None:
    unrun = [
        f"{s.file.relative_to(ROOT)}:{s.line} ({', '.join(c for c in s.commands if c not in RUN)})"
        for s in shell_snippets()
        if not s.marked and not (s.commands and all(command in RUN for command in s.commands))
    ]
    assert not unrun, (
        "shell snippets neither run by tests/test_docs.py (RUN) nor marked "
        f"'<!-- not run: REASON -->' on the line before the fence: {unrun}"
    )


def test_a_marked_snippet_says_why() -> None:
    for path in DOCS:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if "not run" in line and line.strip().startswith("<!--"):
                assert NOT_RUN.match(line), f"{path.relative_to(ROOT)}:{number}: '<!-- not run: REASON -->'"


def run_commands() -> list[str]:
    return sorted({c for s in shell_snippets() if not s.marked for c in s.commands})


@pytest.mark.parametrize("command", run_commands())
def test_each_unmarked_snippet_command_runs(command: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "plugins" / "emr")}
    done = subprocess.run(RUN[command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"{command}: {done.stdout}{done.stderr}"


def test_the_readme_is_a_front_page_naming_make_demo_and_make_test_first() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 160
    commands = [
        match.group(1).strip()
        for match in re.finditer(r"`((?:make|python3?|\.venv/\S+|pytest|errbot|aws|docker) [^`]*)`", text)
    ]
    first_snippet = next(s for s in snippets(ROOT / "README.md") if s.language in SHELL)
    named = [c.split("#")[0].strip() for c in first_snippet.commands]
    assert named[:2] == ["make demo", "make test"]
    before = text[: text.index("```sh")]
    assert not [c for c in commands if text.index(f"`{c}`") < len(before)], "a command named before make demo"
