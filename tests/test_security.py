"""Security of the edge process: mutual TLS + password + ACL against a real mosquitto, secrets kept out of argv,
logs and MQTT, a broker with an unknown CA refused with a clear error, private outbox files.

Certificates are generated here with ``cryptography`` (EC P-256, valid for one day): a CA, the broker's
certificate for 127.0.0.1, and client certificates for the device and for the VMS subscriber.
"""
from __future__ import annotations

import datetime
import ipaddress
import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from edge.capture import parse_source, redact
from edge.mqtt import MqttConfig, read_password
from edge.outbox import Outbox
from edge.pipeline import JsonlSink
from tests.mqtt_broker import MosquittoBroker
from tests.test_faults import DEVICE, PREFIX, EdgeProcess, Recorder, check_delivery, delivered_all, wait_until, \
    write_video

ROOT = Path(__file__).resolve().parents[1]
ACL = f"""user edge
topic readwrite {PREFIX}/#
user vms
topic read {PREFIX}/#
"""


class Pki:
    """A throw-away CA that signs server and client certificates into ``folder`` (PEM files)."""

    def __init__(self, folder: Path, name: str) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} test CA")])
        self.cert = (self._builder(subject, subject, self.key.public_key())
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .sign(self.key, hashes.SHA256()))
        self.ca = self._write(f"{name}-ca.pem", self.cert.public_bytes(serialization.Encoding.PEM))

    @staticmethod
    def _builder(subject: x509.Name, issuer: x509.Name,
                 public_key: ec.EllipticCurvePublicKey) -> x509.CertificateBuilder:
        now = datetime.datetime.now(datetime.timezone.utc)
        return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=1)))

    def _write(self, filename: str, data: bytes) -> Path:
        path = self.folder / filename
        path.write_bytes(data)
        path.chmod(0o600)
        return path

    def issue(self, common_name: str, server: bool) -> tuple[Path, Path]:
        """A certificate and key for ``common_name``: a server one (for 127.0.0.1) or a client one."""
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (self._builder(subject, self.cert.subject, key.public_key())
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        return (self._write(f"{self.name}-{common_name}.pem", cert.public_bytes(serialization.Encoding.PEM)),
                self._write(f"{self.name}-{common_name}.key", key_pem))


def tls_broker(mosquitto_bin: str, workdir: Path, pki: Pki, users: dict[str, str]) -> MosquittoBroker:
    """mosquitto with TLS that requires a client certificate signed by ``pki``, passwords and the ACL."""
    cert, key = pki.issue("broker", server=True)
    broker = MosquittoBroker(mosquitto_bin, workdir, users=users, tls=(pki.ca, cert, key), acl=ACL)
    with broker.config_path.open("a") as config:
        config.write("require_certificate true\n")
    return broker


def tls_setting(ca: Path, cert: Path, key: Path) -> str:
    """The ``mqtt.tls`` section as one ``--set`` override (JSON is YAML)."""
    return "mqtt.tls=" + json.dumps({"ca_certs": str(ca), "certfile": str(cert), "keyfile": str(key)})


def test_mutual_tls_password_and_acl_with_no_secret_leaking(tiny_bundle: Path, mosquitto_bin: str,
                                                             tmp_path: Path, report_delivery: Callable) -> None:
    pki = Pki(tmp_path / "pki", "site")
    edge_cert, edge_key = pki.issue("edge", server=False)
    vms_cert, vms_key = pki.issue("vms", server=False)
    secret = "s3cret-edge-Pw!"
    password_file = tmp_path / "mqtt-password"
    password_file.write_text(secret + "\n")
    password_file.chmod(0o600)
    video = write_video(tmp_path / "cam.mp4", frames=100)
    vms_tls = {"ca_certs": str(pki.ca), "certfile": str(vms_cert), "keyfile": str(vms_key)}
    with tls_broker(mosquitto_bin, tmp_path / "broker", pki, {"edge": secret, "vms": "vms-pw"}) as broker, \
            Recorder(broker.port, username="vms", password="vms-pw", tls=vms_tls) as vms, \
            EdgeProcess(tmp_path, tiny_bundle, broker.port, [f"cam={video}"], "capture.realtime=true",
                        "mqtt.username=edge", f"mqtt.password_file={password_file}",
                        tls_setting(pki.ca, edge_cert, edge_key)) as edge:
        wait_until(lambda: len(vms.events()) >= 2 and vms.on("stats"), 40, "events and stats over TLS", edge)
        cmdline = Path(f"/proc/{edge.pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        environ = Path(f"/proc/{edge.pid}/environ").read_bytes().decode(errors="replace")
        assert "edge/run.py" in cmdline and secret not in cmdline and secret not in environ
        outbox_mode, folder_mode = edge.outbox.stat().st_mode, edge.outbox.parent.stat().st_mode
        assert edge.stop() == 0, edge.log()[-3000:]
        produced = edge.events()
        wait_until(delivered_all(produced, vms), 15, "every event delivered")
    assert report_delivery(check_delivery(produced, vms.events()))["lost"] == 0
    assert vms.on("available")[-1] == "offline"
    everything_published = "".join(payload for _, payload, _ in vms.messages)
    assert secret not in edge.log() and secret not in everything_published
    assert "password" not in json.dumps([json.loads(s) for s in vms.on("stats")]).lower()
    # the outbox holds event payloads: owner-only file in an owner-only folder (created by the process)
    assert stat.S_IMODE(outbox_mode) == 0o600 and stat.S_IMODE(folder_mode) == 0o700
    for leftover in edge.outbox.parent.iterdir():  # WAL and shared-memory files too
        assert stat.S_IMODE(leftover.stat().st_mode) & 0o077 == 0, leftover


def test_a_broker_signed_by_another_ca_is_refused_clearly_and_events_wait(tiny_bundle: Path, mosquitto_bin: str,
                                                                         tmp_path: Path,
                                                                         report_delivery: Callable) -> None:
    site, impostor = Pki(tmp_path / "pki", "site"), Pki(tmp_path / "pki", "impostor")
    edge_cert, edge_key = site.issue("edge", server=False)
    video = write_video(tmp_path / "cam.mp4", frames=100)
    with tls_broker(mosquitto_bin, tmp_path / "broker", impostor, {"edge": "pw"}) as broker, \
            EdgeProcess(tmp_path, tiny_bundle, broker.port, [f"cam={video}"], "capture.realtime=false",
                        "mqtt.username=edge", "mqtt.password_env=EDGE_PW", tls_setting(site.ca, edge_cert, edge_key),
                        "shutdown_timeout_s=0.5",
                        extra=["--exit-when-done"], env={"EDGE_PW": "pw"}) as edge:
        assert edge.process.wait(60) == 0, edge.log()[-3000:]
    log = edge.log()
    assert "TLS certificate check failed" in log and "check mqtt.tls.ca_certs" in log
    produced = edge.events()
    with Outbox(edge.outbox) as outbox:
        kept = outbox.depth()
    report_delivery({"produced": len(produced), "in_outbox": kept, "lost": len(produced) - kept})
    assert kept == len(produced) > 0  # nothing went to the impostor; all kept for later
    assert "Traceback" not in log and DEVICE in log


@pytest.fixture(scope="module")
def tiny_bundle(request: pytest.FixtureRequest) -> Path:
    from tests.test_pipeline import tiny_bundle_path

    return tiny_bundle_path(request.config.cache.mkdir("cplvad-edge"))


# -- secrets in camera URLs, argv, files and the environment ----------------------------------------------------
_HOST = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,12}[a-z0-9])?(\.[a-z0-9]{1,8}){0,2}", fullmatch=True)
_PATH = st.from_regex(r"(/[A-Za-z0-9._~%-]{0,10}){0,3}(\?[a-z]{1,5}=[A-Za-z0-9]{0,5})?", fullmatch=True)
_USER = st.text(st.characters(blacklist_characters=":@", blacklist_categories=("Cs",)), max_size=8)
# passwords as operators type them: '@', '/', ':', '?', '#', spaces and any other character, or percent-encoded
_PASSWORD = st.text(st.characters(blacklist_categories=("Cs",)), min_size=3, max_size=16)


def _url(scheme: str, user: str, password: str, host: str, port: int | None, path: str) -> str:
    return f"{scheme}://{user}:{password}@{host}{f':{port}' if port is not None else ''}{path}"


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["rtsp", "rtsps", "http", "https", "rtmp", "srt"]), _USER, _PASSWORD, st.booleans(), _HOST,
       st.none() | st.integers(1, 65535), _PATH)
def test_no_password_survives_redaction(scheme: str, user: str, raw: str, encode: bool, host: str,
                                        port: int | None, path: str) -> None:
    password = quote(raw, safe="") if encode else raw
    url = _url(scheme, user, password, host, port, path)
    masked = _url(scheme, user, "***", host, port, path)
    assume(password not in masked)  # a password that is also a piece of the rest cannot be told apart
    assert redact(url) == masked  # the user, host, port and path survive
    if '"' not in user + password:  # inside a GStreamer pipeline, quoted as GStreamer needs it
        assert redact(f'rtspsrc location="{url}" latency=0 ! appsink') == \
            f'rtspsrc location="{masked}" latency=0 ! appsink'
    if scheme in ("rtsp", "http", "https") and url == url.strip():
        spec = parse_source(f"cam={url}")
        assert password not in spec.display and spec.display == masked
        derived = parse_source(url)  # a name made from the host and the path, never from the credentials
        assume(password not in host + path)
        assert password not in derived.name and password not in derived.display


def test_redaction_of_the_reported_cases() -> None:
    assert redact("rtsp://admin:Pa@ss@host/x") == "rtsp://admin:***@host/x"
    assert redact("rtsp://:pw@host/x") == "rtsp://:***@host/x"  # empty user
    assert redact("rtsp://u:pa ss/w@rd@10.0.0.5:554/a") == "rtsp://u:***@10.0.0.5:554/a"
    assert redact("rtsp://u:p%40ss%2Fx@h/x") == "rtsp://u:***@h/x"
    assert redact("rtsp://viewer@h/x") == "rtsp://viewer@h/x"  # no password: nothing to hide
    assert parse_source("rtsp://admin:pa/ss@cam.local").name == "cam.local"  # not "admin-ss-cam.local"


def _edge(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "edge" / "run.py"), *args], capture_output=True, text=True,
                          timeout=60, env={**os.environ, **(env or {})})


@pytest.mark.parametrize("argv", [["--mqtt-password", "{s}"], ["--mqtt-password={s}"], ["--mqtt-pass", "{s}"],
                                  ["--password", "{s}", "--camera", "x.mp4"], ["--set", "mqtt.password={s}"]])
def test_a_password_on_the_command_line_is_refused_without_showing_it(argv: list[str], tmp_path: Path) -> None:
    secret = "Hunter2-on-argv"
    result = _edge(*[a.format(s=secret) for a in argv], "--camera", "cam.mp4", "--validate-config",
                   "--set", f"outbox.path={tmp_path / 'outbox.sqlite3'}")
    assert result.returncode == 2, result.stderr[-2000:]
    assert secret not in result.stderr + result.stdout, result.stderr[-2000:]
    named = "mqtt.password" if argv[0] == "--set" else argv[0].partition("=")[0]
    assert named in result.stderr  # the option is named, its value is not


def test_a_password_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "mqtt-password"
    path.write_text("s3cret\n")
    path.chmod(0o640)
    result = _edge("--camera", "cam.mp4", "--validate-config", "--set", f"mqtt.password_file={path}")
    assert result.returncode == 2, result.stderr[-2000:]
    assert str(path) in result.stderr and f"chmod 600 {path}" in result.stderr and "s3cret" not in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    path.chmod(0o600)
    assert read_password(MqttConfig(password_file=path)) == "s3cret"


def test_the_password_variable_leaves_the_environment_once_read() -> None:
    """The variable is removed from os.environ (children do not inherit it) and blanked where the kernel shows
    the process's start-up environment (/proc/<pid>/environ, readable by the same user and root)."""
    secret = "env-Secret-9f3"
    code = ("import os, subprocess, sys; from edge.mqtt import MqttConfig, read_password; "
            "assert read_password(MqttConfig(password_env='EDGE_PW')) == sys.argv[1]; "
            "proc = open(f'/proc/{os.getpid()}/environ', 'rb').read(); "
            "child = subprocess.run(['env'], capture_output=True, text=True).stdout; "
            "print('EDGE_PW' in os.environ, sys.argv[1].encode() in proc, sys.argv[1] in child, b'PATH=' in proc)")
    done = subprocess.run([sys.executable, "-c", code, secret], capture_output=True, text=True, timeout=60,
                          cwd=ROOT, env={**os.environ, "EDGE_PW": secret})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["False", "False", "False", "True"]  # gone; the rest of the block intact


def test_the_event_log_is_private(tmp_path: Path) -> None:
    fresh = JsonlSink(tmp_path / "logs" / "events.jsonl")
    fresh.publish("cam", {"type": "start"})
    fresh.close()
    old = tmp_path / "old.jsonl"
    old.write_text("")
    old.chmod(0o644)
    JsonlSink(old).close()
    for path in (fresh.path, old):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
