"""A real mosquitto broker for tests: free port on 127.0.0.1, generated config, stop/start on the same port.

    with MosquittoBroker(mosquitto_bin, tmp_path) as broker:
        client.connect("127.0.0.1", broker.port)
        broker.stop(); ...; broker.start()      # an outage, same port and (with persistence) same sessions

Options: password users (hashed with ``mosquitto_passwd``), TLS (a listener with the given PEM files), an ACL
file, and persistence (queued QoS 1 messages of persistent sessions survive ``stop()``/``start()``).
:class:`Mqtt311OnlyGate` puts a real broker behind an MQTT 3.1.1-only front door (for the protocol fallback).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class MosquittoBroker:
    def __init__(
        self,
        binary: str,
        workdir: Path,
        users: dict[str, str] | None = None,
        tls: tuple[Path, Path, Path] | None = None,
        acl: str | None = None,
        persistence: bool = False,
        port: int | None = None,
    ) -> None:
        """users: name -> password (then anonymous clients are refused); tls: (ca, cert, key) PEM files."""
        self.binary = binary
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self._process: subprocess.Popen[bytes] | None = None
        self.config_path = self.workdir / "mosquitto.conf"
        self.log_path = self.workdir / "mosquitto.log"
        self.config_path.write_text(self._config(users, tls, acl, persistence))

    def _config(
        self,
        users: dict[str, str] | None,
        tls: tuple[Path, Path, Path] | None,
        acl: str | None,
        persistence: bool,
    ) -> str:
        lines = [
            f"listener {self.port} 127.0.0.1",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            # started as root, mosquitto would switch to user 'mosquitto', who cannot write our folder
            f"user {pwd.getpwuid(os.geteuid()).pw_name}",
        ]
        if users:
            passwd = self.workdir / "passwd"
            passwd.write_text("")
            passwd_bin = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
            for name, password in users.items():
                subprocess.run(
                    [passwd_bin, "-b", str(passwd), name, password], check=True, capture_output=True
                )
            passwd.chmod(0o600)
            lines += ["allow_anonymous false", f"password_file {passwd}"]
        else:
            lines.append("allow_anonymous true")
        if tls:
            ca, cert, key = tls
            lines += [f"cafile {ca}", f"certfile {cert}", f"keyfile {key}"]
        if acl is not None:
            acl_path = self.workdir / "acl"
            acl_path.write_text(acl)
            acl_path.chmod(0o600)
            lines.append(f"acl_file {acl_path}")
        if persistence:
            store = self.workdir / "store"
            store.mkdir(exist_ok=True)
            lines += ["persistence true", f"persistence_location {store}/", "autosave_interval 0"]
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 10.0) -> MosquittoBroker:
        """Start mosquitto and wait until it accepts TCP connections."""
        if self._process is not None and self._process.poll() is None:
            return self
        log = self.log_path.open("ab")
        self._process = subprocess.Popen([self.binary, "-c", str(self.config_path)], stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self._process.returncode}:\n{self.log()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.02)
        self.kill()
        raise RuntimeError(
            f"mosquitto did not accept connections on port {self.port} within {timeout}s:\n{self.log()}"
        )

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful stop (SIGTERM: the persistence file is written); the port stays reserved for start()."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def pause(self) -> None:
        """Freeze the broker (SIGSTOP): connections stay open but nothing is answered, e.g. no PUBACK."""
        if self._process is not None:
            self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGCONT)
            self._process.kill()
            self._process.wait()
        self._process = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> MosquittoBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()


class Mqtt311OnlyGate:
    """A TCP front for a real broker that answers MQTT 5 CONNECTs as an MQTT 3.1.1-only broker does.

    MQTT 3.1.1 (section 3.1.2.2): a server that does not support the protocol level of a CONNECT replies with
    CONNACK return code 0x01 ("unacceptable protocol level") and closes. Older brokers and some cloud
    endpoints behave so. Connections at level 4 (3.1.1) are passed through to the broker byte for byte.
    """

    REFUSED_PROTOCOL_LEVEL = b"\x20\x02\x00\x01"

    def __init__(self, upstream_port: int, host: str = "127.0.0.1") -> None:
        self.host, self.upstream_port = host, upstream_port
        self.refused = 0  # MQTT 5 CONNECTs answered with the refusal
        self._server = socket.create_server((host, 0))
        self.port = int(self._server.getsockname()[1])
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            packet = _read_packet(conn)
            if packet is None or packet[0][0] != 0x10:  # not a CONNECT
                return
            connect, body = packet
            name_len = int.from_bytes(body[:2], "big")
            if body[2 + name_len] == 5:
                self.refused += 1
                conn.sendall(self.REFUSED_PROTOCOL_LEVEL)
                return
            with socket.create_connection((self.host, self.upstream_port)) as upstream:
                upstream.sendall(connect)
                back = threading.Thread(target=_pipe, args=(upstream, conn), daemon=True)
                back.start()
                _pipe(conn, upstream)
                back.join()

    def close(self) -> None:
        self._closed = True
        self._server.close()

    def __enter__(self) -> Mqtt311OnlyGate:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read_exactly(sock: socket.socket, n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _read_packet(sock: socket.socket) -> tuple[bytes, bytes] | None:
    """One MQTT packet (fixed header, remaining-length varint, body) as (whole packet, body)."""
    header = _read_exactly(sock, 1)
    if header is None:
        return None
    length_bytes, length, shift = b"", 0, 0
    while True:
        byte = _read_exactly(sock, 1)
        if byte is None:
            return None
        length_bytes += byte
        length += (byte[0] & 0x7F) << shift
        shift += 7
        if not byte[0] & 0x80:
            break
    body = _read_exactly(sock, length)
    return None if body is None else (header + length_bytes + body, body)


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while chunk := src.recv(65536):
            dst.sendall(chunk)
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass
