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


def test_the_log_walk_skips_a_folder_that_vanishes_while_it_is_walked(tmp_path, monkeypatch) -> None:
    import os
    (tmp_path / "topic-1").mkdir()
    (tmp_path / "topic-1" / "00000.log").write_text("x")
    (tmp_path / "kept.log").write_text("y")
    real_scandir = os.scandir

    def vanishing(path="."):  # a Kafka topic folder deleted between the listing and the visit
        if str(path).endswith("topic-1"):
            raise FileNotFoundError(path)
        return real_scandir(path)
    monkeypatch.setattr(os, "scandir", vanishing)
    assert log_files([tmp_path, tmp_path / "missing"]) == [tmp_path / "kept.log"]


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


def test_the_scan_knows_the_database_roles_password_files_and_rotated_secrets(tmp_path) -> None:
    """libpq's password files are what components read: their passwords are searched too (named by
    file and role), and a secret rotated during a run is still searched under its old value."""
    from vreserve.pg_secrets import update_passfile
    from vreserve.secret_scan import remember

    secrets = tmp_path / "secrets"
    secrets.mkdir()
    update_passfile(secrets / "pgpass-vr_api", "vr_api", "api-pass:with\\escapes-0123")
    (secrets / "kafka-vr-bridge.secret.next").write_text("pending-rotation-value-77\n")
    earlier = known_secrets(secrets)
    assert earlier == {"pgpass-vr_api:vr_api": "api-pass:with\\escapes-0123",
                       "kafka-vr-bridge.secret.next": "pending-rotation-value-77"}
    update_passfile(secrets / "pgpass-vr_api", "vr_api", "rotated-api-pass-0456")
    (secrets / "kafka-vr-bridge.secret.next").unlink()
    merged = remember(earlier, known_secrets(secrets))
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "api.log").write_text("login failed for api-pass:with\\escapes-0123\n")
    (logs / "bridge.log").write_text("sasl pending-rotation-value-77\n")
    (logs / "new.log").write_text("rotated-api-pass-0456\n")
    found = {(leak.log.name, leak.secret) for leak in scan(merged, log_files([logs]))}
    assert found == {("api.log", "pgpass-vr_api:vr_api (before rotation)"),
                     ("bridge.log", "kafka-vr-bridge.secret.next (before rotation)"),
                     ("new.log", "pgpass-vr_api:vr_api")}


@pytest.mark.services
def test_every_database_role_password_is_searched(base_settings: Settings) -> None:
    """The runner's per-role password files are part of what the scan (session end, `vreserve
    secrets-scan`) looks for."""
    from vreserve.db_access import ALL_ROLES

    if base_settings.pg_roles == "single":
        pytest.skip("VR_PG_ROLES=single: no per-role passwords")
    secrets = known_secrets(base_settings.secrets_folder)
    for role in ALL_ROLES:
        assert f"pg-{role}.secret" in secrets and f"pgpass-{role}:{role}" in secrets, role
        assert secrets[f"pg-{role}.secret"] == secrets[f"pgpass-{role}:{role}"], role
