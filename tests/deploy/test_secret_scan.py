"""The log scan finds a leaked secret (so its silence means something), and the running
services' logs hold none of the installation's secrets. The test session also scans every log
of the whole run when it ends (tests/conftest.py: pytest_sessionfinish)."""
from __future__ import annotations

import pytest

from vreserve.secret_scan import known_secrets, log_files, scan
from vreserve.settings import Settings


def test_the_scan_finds_a_leaked_secret_and_names_only_its_file(tmp_path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "kafka-vr-stream.secret").write_text("s3cr3t-value-0123456789\n")
    (secrets / "short.secret").write_text("abc\n")
    logs = tmp_path / "logs" / "stream"
    logs.mkdir(parents=True)
    (logs / "worker.log").write_text("connecting with password=s3cr3t-value-0123456789 ...\n")
    (logs / "clean.log").write_text("nothing here; abc is too short to count\n")
    leaks = scan(known_secrets(secrets), log_files([tmp_path / "logs"]))
    assert [(leak.log.name, leak.secret) for leak in leaks] == [("worker.log", "kafka-vr-stream.secret")]
    assert "s3cr3t" not in repr(leaks)


@pytest.mark.services
def test_no_generated_secret_in_the_services_logs(base_settings: Settings) -> None:
    secrets = known_secrets(base_settings.secrets_folder)
    assert secrets, f"no generated secrets in {base_settings.secrets_folder}"
    logs = log_files([base_settings.state_dir])
    assert logs, f"no logs under {base_settings.state_dir}"
    assert scan(secrets, logs) == []


def test_the_cli_scan_fails_on_a_find_and_names_only_the_file(tmp_path) -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    secrets, state, demo_logs = tmp_path / "secrets", tmp_path / "state", tmp_path / "out" / "logs"
    for folder in (secrets, state, demo_logs):
        folder.mkdir(parents=True)
    (secrets / "kafka-vr-api.secret").write_text("planted-secret-value-42\n")
    (demo_logs / "api.log").write_text("oops: planted-secret-value-42\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("VR_")}
    env.update(VR_STATE_DIR=str(state), VR_SECRETS_DIR=str(secrets))
    root = Path(__file__).resolve().parents[2]
    res = subprocess.run([sys.executable, "-m", "vreserve.cli", "secrets-scan", str(tmp_path / "out")],
                         env=env, cwd=root, capture_output=True, text=True, timeout=60)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "kafka-vr-api.secret" in res.stdout and "api.log" in res.stdout
    assert "planted-secret-value-42" not in res.stdout + res.stderr
