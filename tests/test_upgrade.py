"""An upgrade on disk, then ``!plugin reload EMR`` in the real bot: the new code of every module runs."""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import pytest
from console import PROMPT, Console

from demo.__main__ import demo_environment
from demo.emulator import Emulator

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_plugin_reload_runs_the_new_code_of_the_sibling_modules(tmp_path: Path, emulator: Emulator) -> None:
    emulator.reset()
    emulator.seed()
    install = tmp_path / "emr-chatops"  # a deployed copy we can upgrade in place
    for part in ("plugins", "storage", "config.py"):
        source = ROOT / part
        if source.is_dir():
            shutil.copytree(source, install / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, install / part)
    env = demo_environment(emulator, str(tmp_path / "data")) | {"EMR_POLL_SECONDS": "3600"}
    console = Console([str(Path(sys.executable).with_name("errbot")), "-c", str(install / "config.py")], env)
    try:
        console.wait_for(PROMPT, timeout=60)
        reason = "r" * 250
        console.type(f"!emr lock {reason}")
        assert "keep it under 200" in console.wait_for("keep it under", timeout=30)
        # The upgrade: a sibling module (not emr.py) changes on disk.
        module = install / "plugins" / "emr" / "emrchatops/domain/state.py"
        source = module.read_text()
        assert "REASON_LIMIT = 200" in source  # the upgrade must change something, or this test proves nothing
        module.write_text(source.replace("REASON_LIMIT = 200", "REASON_LIMIT = 300"))
        later = time.time() + 2
        os.utime(module, (later, later))
        console.type("!plugin reload EMR")
        console.wait_for("reloaded", timeout=30)
        console.type(f"!emr lock {reason}")
        assert "admin holds analytics" in console.wait_for("holds analytics", timeout=30)
        assert console.close() == 0
    finally:
        console.ensure_dead()
