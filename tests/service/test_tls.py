"""TLS: the service serves over TLS with --tls-cert/--tls-key; a client trusting the cert connects."""

from __future__ import annotations

import shutil
import subprocess

import grpc
import pytest

from ps.api.server import ServerConfig, run_server
from ps.client import Client
from ps.jobs.manager import JobManager, ManagerConfig
from ps.jobs.store import JobStore

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl binary")


def test_tls_round_trip(ray_runtime, tmp_path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    store = JobStore(tmp_path / "jobs.db")
    manager = JobManager(store, ManagerConfig(storage=tmp_path / "runs", data_root=tmp_path))
    config = ServerConfig(host="127.0.0.1", port=0, token="t", tls_cert=cert, tls_key=key)
    with run_server(config, manager) as (_, port):
        with Client(f"localhost:{port}", token="t", tls_ca=cert) as client:
            with pytest.raises(grpc.RpcError) as info:
                client.get("missing")
            assert info.value.code() == grpc.StatusCode.NOT_FOUND  # reached the servicer over TLS
        with Client(f"localhost:{port}", token="t") as plaintext:
            with pytest.raises(grpc.RpcError) as info:
                plaintext.get("missing")
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    store.close()
