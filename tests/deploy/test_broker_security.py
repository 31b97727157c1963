"""Issue 18 (MQTT part) on the real broker: TLS only, verified against the local CA; secrets generated
per installation, 0600, never fixed in code or docs."""
from __future__ import annotations

import os
import socket
import ssl
import stat
import uuid
from pathlib import Path

import pytest

from deploy.pki import ensure_ca, ensure_server_cert
from vreserve.mqtt import connect_and_wait, new_client
from vreserve.settings import PROJECT_ROOT, Settings

pytestmark = pytest.mark.services


def _tracked_files() -> list[Path]:
    """The repository's own text files (git's list; no venv, state folder or build output)."""
    import subprocess

    out = subprocess.run(["git", "ls-files", "-z"], cwd=PROJECT_ROOT, capture_output=True, check=True).stdout
    paths = [PROJECT_ROOT / p for p in out.decode().split("\0") if p]
    return [p for p in paths if p.is_file() and p.suffix in (".py", ".md", ".yaml", ".yml", ".sh", ".toml", ".conf", ".json", "")]


def _tls_broker(settings: Settings) -> None:
    if not settings.mqtt.tls:
        pytest.skip("the broker under test is configured for plain mqtt:// (VR_MQTT_URL)")


def test_service_account_logs_in_over_verified_tls(base_settings: Settings) -> None:
    _tls_broker(base_settings)
    addr = base_settings.mqtt
    client = new_client(addr, f"vr-tls-{uuid.uuid4().hex[:8]}")
    try:
        rc = connect_and_wait(client, addr)
        assert rc is not None and not rc.is_failure, rc
        assert client.socket().version() in ("TLSv1.2", "TLSv1.3")
    finally:
        client.loop_stop()
        client.disconnect()


def test_a_plaintext_client_is_refused(base_settings: Settings) -> None:
    """Right account, right password, no TLS: the broker must not speak MQTT to it."""
    _tls_broker(base_settings)
    addr = base_settings.mqtt
    plain = addr.__class__(addr.host, addr.port, addr.username, addr.password, tls=False)
    client = new_client(plain, f"vr-plain-{uuid.uuid4().hex[:8]}")
    try:
        try:
            rc = connect_and_wait(client, plain, timeout=5)
        except OSError:
            rc = None
        assert rc is None or rc.is_failure, f"plaintext MQTT accepted: {rc}"
    finally:
        client.loop_stop()
        client.disconnect()


def test_a_broker_certificate_from_another_ca_is_rejected(base_settings: Settings, tmp_path: Path) -> None:
    """Clients verify the server: with a stranger's CA the handshake fails (no silent fallback)."""
    _tls_broker(base_settings)
    stranger_ca, _ = ensure_ca(tmp_path / "other-ca")
    addr = base_settings.mqtt
    ctx = ssl.create_default_context(cafile=str(stranger_ca))
    with socket.create_connection((addr.host, addr.port), timeout=5) as raw:
        with pytest.raises(ssl.SSLCertVerificationError):
            ctx.wrap_socket(raw, server_hostname=addr.host)


def test_local_ca_and_keys_are_private_and_certificates_reissued_only_when_needed(tmp_path: Path) -> None:
    cert, key = ensure_server_cert(tmp_path / "ca", tmp_path / "svc", "mosquitto", ["127.0.0.1"])
    for private in (tmp_path / "ca" / "ca.key", key):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600, private
    assert stat.S_IMODE((tmp_path / "ca").stat().st_mode) == 0o700
    first = cert.read_bytes()
    assert ensure_server_cert(tmp_path / "ca", tmp_path / "svc", "mosquitto", ["127.0.0.1"])[0].read_bytes() == first
    renamed = ensure_server_cert(tmp_path / "ca", tmp_path / "svc", "mosquitto", ["broker.example"])[0]
    assert renamed.read_bytes() != first
    ctx = ssl.create_default_context(cafile=str(tmp_path / "ca" / "ca.crt"))
    ctx.load_verify_locations(cafile=str(tmp_path / "ca" / "ca.crt"))  # parses: a valid CA certificate


def test_runner_secrets_are_generated_and_private(base_settings: Settings) -> None:
    secrets_dir = base_settings.state_dir / "secrets"
    if not secrets_dir.exists():
        pytest.skip("services not started by this checkout's runner (no state folder secrets)")
    files = list(secrets_dir.glob("*.secret"))
    assert files
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
        assert len(f.read_text().strip()) >= 24
    assert stat.S_IMODE(secrets_dir.stat().st_mode) == 0o700


def test_no_fixed_mqtt_password_in_code_or_docs() -> None:
    """The old fixed service password is gone, and the default URL carries none."""
    assert Settings.from_env({}).mqtt_url.startswith("mqtts://") and "@" in Settings.from_env({}).mqtt_url
    assert ":" not in Settings.from_env({}).mqtt_url.split("//", 1)[1].split("@", 1)[0]
    hits = []
    for path in _tracked_files():
        if path != Path(__file__) and "vr-service-local" in path.read_text(errors="replace"):
            hits.append(str(path.relative_to(PROJECT_ROOT)))
    assert not hits, f"fixed default password still in {hits}"


def test_site_provisioning_runs_no_process(settings: Settings, unique: str, monkeypatch) -> None:
    """Site passwords travel to the broker inside TLS, never as a command-line argument."""
    import subprocess

    from vreserve.site_credentials import provision_site_credentials, remove_site_credentials

    def refuse(*args, **kwargs):
        raise AssertionError(f"provisioning started a process: {args[0] if args else kwargs}")

    monkeypatch.setattr(subprocess, "Popen", refuse)
    monkeypatch.setattr(os, "posix_spawn", refuse, raising=False)
    site = f"t{unique}-noargv"
    creds = provision_site_credentials(settings, [site])
    try:
        client = new_client(settings.mqtt, f"vr-{site}", username=site, password=creds[site])
        try:
            rc = connect_and_wait(client, settings.mqtt)
            assert rc is not None and not rc.is_failure
        finally:
            client.loop_stop()
            client.disconnect()
    finally:
        remove_site_credentials(settings, [site])
