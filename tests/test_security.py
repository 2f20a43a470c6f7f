"""Security of the edge process: mutual TLS + password + ACL against a real mosquitto, secrets kept out of argv,
logs and MQTT, a broker with an unknown CA refused with a clear error, private outbox files.

Certificates are generated here with ``cryptography`` (EC P-256, valid for one day): a CA, the broker's
certificate for 127.0.0.1, and client certificates for the device and for the VMS subscriber.
"""
from __future__ import annotations

import datetime
import ipaddress
import json
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edge.outbox import Outbox
from tests.mqtt_broker import MosquittoBroker
from tests.test_faults import DEVICE, PREFIX, EdgeProcess, Recorder, check_delivery, delivered_all, wait_until, \
    write_video

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
