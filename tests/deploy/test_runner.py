"""The local runner's promises: a second `up` is a no-op, `status` sees all three healthy."""
from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.services


def test_second_up_is_a_noop_and_status_is_healthy(service_source) -> None:
    if service_source.how != "local runner":
        pytest.skip(f"services come from {service_source.how}, not the local runner")
    from deploy import runner

    pids_before = {s.name: s.pid for s in runner.status(service_source.settings)}
    results = runner.up(service_source.settings, progress=lambda _m: None)
    assert {name: started for name, (_st, started) in results.items()} == {
        "postgres": None, "mosquitto": None, "kafka": None,
    }
    after = runner.status(service_source.settings)
    assert all(s.healthy for s in after), [(s.name, s.detail) for s in after]
    assert {s.name: s.pid for s in after} == pids_before

    cli = subprocess.run([sys.executable, "-m", "vreserve.cli", "services", "status"],
                         capture_output=True, text=True, timeout=60)
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert cli.stdout.count("healthy") == 3


def test_port_taken_by_a_stranger_is_reported(service_source, tmp_path) -> None:
    if service_source.how != "local runner":
        pytest.skip("local runner only")
    from deploy import runner

    # A second runner state folder pointed at the same ports must refuse, naming the port.
    other = service_source.settings.with_(state_dir=tmp_path / "state")
    with pytest.raises(runner.ServiceError, match="already in use"):
        runner.Postgres(other).up(progress=lambda _m: None)


@pytest.mark.parametrize("first_byte", range(0xF8, 0xFC))
def test_cluster_id_never_starts_with_a_dash(monkeypatch, first_byte: int) -> None:
    """A uuid whose first six bits are 111110 encodes to '-...': the storage tool once read that as an option."""
    import uuid as uuid_module

    from deploy import runner

    dash_first = uuid_module.UUID(bytes=bytes([first_byte]) + bytes(15))
    assert runner.base64.urlsafe_b64encode(dash_first.bytes).startswith(b"-")
    draws = iter([dash_first, dash_first, uuid_module.UUID(int=1 << 64)])
    monkeypatch.setattr(runner.uuid, "uuid4", lambda: next(draws))
    cluster_id = runner.new_cluster_id()
    assert len(cluster_id) == 22 and not cluster_id.startswith("-")


@pytest.mark.parametrize("mode", [0o755, 0o700])
def test_postgres_home_is_the_same_before_and_after_the_state_folder_exists(tmp_path_factory, mode: int) -> None:
    """CI once lost its server: bootstrap decided on /var/tmp (no state folder yet, so the probe
    failed), the test fixture then found the folder enterable and looked in the checkout."""
    import os
    import pwd
    import shutil
    import tempfile
    from pathlib import Path

    from deploy import runner
    from vreserve.settings import Settings

    if os.geteuid() != 0:
        pytest.skip("the choice of folder only arises when root runs the server as 'postgres'")
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("no 'postgres' system user")
    checkout = Path(tempfile.mkdtemp(prefix="vr-home-", dir="/var/tmp"))
    try:
        checkout.chmod(mode)
        settings = Settings.from_env({}).with_(state_dir=checkout / ".vr")
        first = runner.Postgres(settings).home
        (checkout / ".vr" / "mosquitto").mkdir(parents=True, exist_ok=True)  # another service starts
        second = runner.Postgres(settings).home
        assert first == second
        assert (first == settings.state_dir / "postgres") == (mode == 0o755)
    finally:
        shutil.rmtree(checkout, ignore_errors=True)
