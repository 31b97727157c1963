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
