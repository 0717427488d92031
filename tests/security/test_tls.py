"""Native TLS for ``ciyuan serve``: a self-signed certificate made at test time, a real gateway
process serving https with it, the openai SDK trusting exactly that certificate, and plain
http to the same port refused. The settings checks and the banner's masking run in-process.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import secrets
import ssl
from pathlib import Path

import httpx
import openai
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ciyuan import apikeys
from ciyuan.cli.serve import _without_password, tls_problem
from ciyuan.pricing.money import Amount
from ciyuan.settings import Settings
from ciyuan.store import open_store
from tests.conftest import CIYUAN, Process, child_env, free_port
from tests.e2e.conftest import demo_upstreams, tracked


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, valid for a day, and its key (PEM files)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ciyuan-test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_serve_with_tls_answers_https_and_refuses_plain_http(
    demo_upstream: str, pg_url: str, tmp_path: Path
) -> None:
    cert, key = self_signed(tmp_path)
    # PostgreSQL here trusts loopback, so any password works: it must stay out of the log.
    password = "db-password-" + secrets.token_hex(8)
    assert "://postgres@" in pg_url
    db_url = pg_url.replace("://postgres@", f"://postgres:{password}@")
    store = open_store(db_url)
    account = store.create_account("tls")
    store.grant(account.id, Amount.parse("1.00"))
    new = apikeys.generate()
    store.create_api_key(account.id, new.prefix, new.hash_hex, None)
    port = free_port()
    env = child_env(CIYUAN_DB=db_url, CIYUAN_UPSTREAMS=demo_upstreams(demo_upstream))
    args = [*CIYUAN, "serve", "--port", str(port), "--tls-cert", str(cert), "--tls-key", str(key)]
    process = Process(args, env, tmp_path / "gateway.log")
    try:
        process.wait_for(rf"Ciyuan gateway listening on https://127\.0\.0\.1:{port}")
        trusted = httpx.Client(verify=ssl.create_default_context(cafile=str(cert)), timeout=30)
        client = tracked(
            openai.OpenAI(
                base_url=f"https://127.0.0.1:{port}/v1",
                api_key=new.secret.reveal(),
                http_client=trusted,
                max_retries=0,
            )
        )
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "over TLS"}]
        )
        assert raw.parse().choices[0].message.content
        cost = Amount.parse(raw.headers["x-ciyuan-cost"])
        assert cost > Amount.zero()
        assert store.balance(account.id).available == Amount.parse("1.00") - cost

        # The certificate is what makes it trusted: a default client refuses it.
        untrusted = tracked(
            openai.OpenAI(base_url=f"https://127.0.0.1:{port}/v1", api_key="ck-x", max_retries=0)
        )
        with pytest.raises(openai.APIConnectionError):
            untrusted.models.list()
        # Plain http on the TLS port gets no HTTP answer at all.
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
    finally:
        process.stop()
        store.close()
    log = process.log.read_text()
    assert "postgresql://postgres:***@127.0.0.1" in log and password not in log
    assert new.secret.reveal() not in log


def test_tls_settings_need_both_readable_files(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    assert tls_problem(Settings()) is None
    assert tls_problem(Settings(tls_certfile=cert, tls_keyfile=key)) is None
    only_cert = tls_problem(Settings(tls_certfile=cert))
    assert only_cert is not None and "--tls-key" in only_cert
    missing = tls_problem(Settings(tls_certfile=cert, tls_keyfile=tmp_path / "nope.pem"))
    assert missing is not None and "nope.pem" in missing


def test_the_banner_masks_database_passwords() -> None:
    """The banner goes to the gateway's log: a database password must not."""
    assert _without_password("sqlite:///ciyuan.db") == "sqlite:///ciyuan.db"
    assert _without_password("postgresql://app@db:5432/x") == "postgresql://app@db:5432/x"
    masked = _without_password("postgresql://app:hunter2@db:5432/x?options=-c%20a%3Db")
    assert masked == "postgresql://app:***@db:5432/x?options=-c%20a%3Db"
    query = _without_password("postgresql://db/x?sslmode=require&password=hunter2")
    assert "hunter2" not in query and "sslmode=require" in query
