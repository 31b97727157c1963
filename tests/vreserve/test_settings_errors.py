"""Issue 10 s.3: one list of known settings, no secret in a settings error, one-line errors.

Every ``vreserve`` command is walked from the click tree, so a command added later is covered too.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from vreserve.cli import cli
from vreserve.settings import PROJECT_ROOT, Settings, SettingsError, known_names, redact

SECRET = "hunter2-s3cret"
#: VR_ names that appear on purpose as *unknown* (tests proving a typo is refused).
DELIBERATE_TYPOS = {"VR_KAFKA_BOOTSTRAPS"}


def _commands(group: click.Group = cli, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every leaf command of ``vreserve`` as its argv path, e.g. ("ingest", "run")."""
    out: list[tuple[str, ...]] = []
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            out.extend(_commands(command, (*path, name)))
        else:
            out.append((*path, name))
    return out


def _clean_env(**extra: str) -> dict[str, str | None]:
    """CliRunner's env overlay: unset every VR_ variable of the caller, then set ``extra``."""
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("VR_")}
    env.update(extra)
    return env


def test_the_command_tree_is_walked() -> None:
    paths = _commands()
    assert ("services", "up") in paths and ("ingest", "run") in paths and len(paths) >= 15


def test_every_vr_name_used_anywhere_is_a_known_setting() -> None:
    """Code, scripts and docs may name only VR_ variables that Settings accepts."""
    known = set(known_names())
    used: dict[str, set[str]] = {}
    for path in PROJECT_ROOT.rglob("*"):
        rel = path.relative_to(PROJECT_ROOT)
        if rel.parts[0].startswith(".") or rel.parts[0] in ("out", "build") or not path.is_file():
            continue
        if path.suffix not in (".py", ".sh", ".md", ".yaml", ".yml", ".toml", ".cfg", "") or path == Path(__file__):
            continue
        for name in re.findall(r"\bVR_[A-Z][A-Z0-9_]*", path.read_text(errors="replace")):
            used.setdefault(name, set()).add(str(rel))
    unknown = {n: sorted(w) for n, w in used.items() if n not in known and n not in DELIBERATE_TYPOS}
    assert not unknown, f"VR_ names not in vreserve/settings.py: {unknown}"
    assert {"VR_KAFKA_HEAP", "VR_TEST_KEEP_DATABASES", "VR_TEST_KEEP_SERVICES"} <= known


@pytest.mark.parametrize("path", _commands(), ids=" ".join)
def test_documented_variables_break_no_command(path: tuple[str, ...]) -> None:
    """VR_KAFKA_HEAP (README, runner) and VR_TEST_KEEP_DATABASES (fixtures) made every command fail."""
    env = _clean_env(VR_KAFKA_HEAP="2g", VR_TEST_KEEP_DATABASES="1", VR_TEST_KEEP_SERVICES="1")
    result = CliRunner().invoke(cli, [*path, "--help"], env=env)
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    "variable, value",
    [
        ("VR_MQTT_URL", f"http://vr-service:{SECRET}@127.0.0.1:1883"),
        ("VR_MQTT_URL", f"mqtts://vr-service:{SECRET}@127.0.0.1:notaport"),
        ("VR_LOG_LEVEL", "LOUD"),
        ("VR_PARTITIONS", f"postgresql://u:{SECRET}@h/db"),
        ("VR_KAFKA_HEAP", "lots"),
    ],
)
def test_a_bad_setting_is_one_line_exit_2_and_no_secret_for_every_command(variable: str, value: str) -> None:
    runner = CliRunner()
    for path in _commands():
        result = runner.invoke(cli, [*path, "--help"], env=_clean_env(**{variable: value}))
        where = f"vreserve {' '.join(path)} with {variable}"
        assert result.exit_code == 2, f"{where}: exit {result.exit_code}: {result.output}{result.exception!r}"
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: ") and variable in lines[0], f"{where}: {result.output}"
        assert SECRET not in result.output, f"{where} printed the secret: {result.output}"


def test_a_real_command_in_a_real_process_prints_one_line_without_the_password() -> None:
    """Outside click's test runner: stderr is exactly one line, no traceback, no password."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VR_")}
    for bad in ({"VR_MQTT_URL": f"http://vr-service:{SECRET}@127.0.0.1:1883"}, {"VR_LOG_LEVEL": "LOUD"}):
        proc = subprocess.run([sys.executable, "-m", "vreserve.cli", "ingest", "run"], env={**env, **bad},
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2, proc.stderr
        assert proc.stdout == "" and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert "Traceback" not in proc.stderr and SECRET not in proc.stderr


def test_settings_errors_and_reprs_hide_passwords() -> None:
    with pytest.raises(SettingsError) as err:
        Settings.from_env({"VR_MQTT_URL": f"ftp://u:{SECRET}@h"})
    assert SECRET not in str(err.value) and "***" in str(err.value)
    addr = Settings(mqtt_url=f"mqtts://u:{SECRET}@h:8883").mqtt
    assert addr.password == SECRET and addr.tls and SECRET not in repr(addr)
    assert redact(f"password={SECRET} host=h") == "password=*** host=h"
    assert redact(f"mqtts://u:p@s{SECRET}@h/x") == "mqtts://u:***@h/x"


def test_a_database_error_does_not_print_the_dsn_password() -> None:
    """`vreserve contracts list` against an unreachable server names it, without the password."""
    env = _clean_env(VR_PG_DSN=f"postgresql://vreserve:{SECRET}@127.0.0.1:1/vreserve")
    result = CliRunner().invoke(cli, ["contracts", "list"], env=env)
    assert result.exit_code != 0 and "127.0.0.1" in result.output, result.output
    assert SECRET not in result.output
