"""Consent tokens are standard JWS: a JOSE library that is not ours (PyJWT
over `cryptography`) issues them, the real collector verifies them against
each record sent by the OpenTelemetry Python SDK, DuckDB reads the consent
columns with their documented names and types, and PyJWT checks the stored
token again."""

import base64
import json
import time

import duckdb
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource

from test_independent import Collector, emit

KID = "py-approvals-1"


def b64url(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def consent(tmp_path_factory):
    root = tmp_path_factory.mktemp("consent")
    key = Ed25519PrivateKey.generate()
    public = key.public_key()
    x = b64url(public.public_bytes(Encoding.Raw, PublicFormat.Raw))
    jwks = root / "consent.jwks"
    jwks.write_text(json.dumps({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": KID, "x": x}]}))
    now = int(time.time())

    def token(jti, target="inv_7", sub="usr_dana"):
        claims = {"sub": sub, "act": {"sub": "agt_py"}, "action": "invoices.pay",
                  "target": target, "scopes": ["invoices:write"],
                  "iat": now - 30, "exp": now + 300, "jti": jti}
        return jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": KID})

    data = root / "data"
    collector = Collector(data, "--dangerous-action", "invoices.pay",
                          "--consent-keys-file", str(jwks))
    provider = LoggerProvider(resource=Resource.create({"service.name": "py-billing"}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(
        OTLPLogExporter(endpoint=f"http://{collector.http}/v1/logs")))
    logger = provider.get_logger("py-client")
    good = token("cns_py_1")
    for n, consent_token in [(1, good), (2, token("cns_py_2", target="inv_9")), (3, good)]:
        emit(logger, "audit.action", {
            "audit.event.id": f"019ac0de-0000-7000-8000-00000000c00{n}",
            "gen_ai.agent.id": "agt_py", "audit.owner.id": "usr_dana",
            "audit.action": "invoices.pay", "audit.target": "inv_7",
            "audit.scopes": ["invoices:write"], "audit.consent.token": consent_token,
        }, (now + n) * 1_000_000_000)
    provider.shutdown()
    assert collector.terminate() == 0
    return {"data": data, "public": public, "good": good}


def test_duckdb_reads_the_consent_columns_with_their_types(consent):
    con = duckdb.connect()
    src = f"read_parquet('{consent['data']}/audit/**/*.parquet', hive_partitioning = true)"
    types = {name: ty for name, ty, *_ in con.execute(f"DESCRIBE SELECT * FROM {src}").fetchall()}
    assert {c: types[c] for c in ["consent_id", "consent_token", "consent_verified",
                                  "consent_key_id", "consent_approver"]} == {
        "consent_id": "VARCHAR", "consent_token": "VARCHAR", "consent_verified": "BOOLEAN",
        "consent_key_id": "VARCHAR", "consent_approver": "VARCHAR"}
    rows = con.execute(f"""SELECT event_id, consent_id, consent_verified, consent_key_id,
        consent_approver, consent_token FROM {src}""").fetchall()
    assert rows == [("019ac0de-0000-7000-8000-00000000c001", "cns_py_1", True, KID, "usr_dana",
                     consent["good"])]


def test_wrong_target_and_reuse_are_refused_with_the_reason(consent):
    con = duckdb.connect()
    src = f"read_parquet('{consent['data']}/violations/**/*.parquet', hive_partitioning = true)"
    rows = con.execute(f"""SELECT attributes['audit.refused_event_id'], missing, reason
        FROM {src} ORDER BY 1""").fetchall()
    assert [(e, m) for e, m, _ in rows] == [
        ("019ac0de-0000-7000-8000-00000000c002", ["audit.consent.token"]),
        ("019ac0de-0000-7000-8000-00000000c003", ["audit.consent.token"])]
    assert 'token is for target "inv_9"' in rows[0][2], rows[0][2]
    assert 'consent "cns_py_1" was already used by event' in rows[1][2], rows[1][2]


def test_the_stored_token_is_checked_again_by_a_jose_library(consent):
    con = duckdb.connect()
    token = con.execute(f"""SELECT consent_token FROM
        read_parquet('{consent['data']}/audit/**/*.parquet')""").fetchone()[0]
    claims = jwt.decode(token, consent["public"], algorithms=["EdDSA"])
    assert (claims["sub"], claims["act"], claims["jti"]) == ("usr_dana", {"sub": "agt_py"}, "cns_py_1")
