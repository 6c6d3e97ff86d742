"""The web console at fleet scale: 10,000 applications and 500 rejected certificates, fleet page and inbox."""

from __future__ import annotations

import re
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from . import section
from .common import new_home
from .fleet import seed

PASSWORD = "bench password 123"


def _rejected_certificates(count: int, now: datetime):
    """``count`` distinct self-signed peer certificates on one EC key (parsing cost is what is measured)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    for i in range(count):
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"peer{i}")])
        yield (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
               .not_valid_after(now + timedelta(days=365))
               .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(f"urn:peer:{i}")]), critical=False)
               .sign(key, hashes.SHA256()))


def _median_ms(client, path: str, repeat: int = 20) -> tuple[float, float, int]:
    """Median wall-clock and CPU milliseconds (process time: the server thread and the client; on a shared
    machine the CPU time is the steadier of the two)."""
    client.get(path)  # warm-up
    times, cpu = [], []
    for _ in range(repeat):
        started, started_cpu = time.perf_counter(), time.process_time()
        response = client.get(path)
        times.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
        assert response.status_code == 200, response.status_code
    return statistics.median(times) * 1000, statistics.median(cpu) * 1000, len(response.content)


@section("web", "web console: fleet page and rejected inbox with 10,000 applications and 500 rejected certificates")
def bench_web(work: Path, quick: bool = False) -> None:
    from starlette.testclient import TestClient

    import db
    import pki
    from certmgr.services.web_users import add_user
    from certmgr.web.app import make_app
    from certmgr.web.timeline import timeline_svg

    count, rejected = (2_000, 100) if quick else (10_000, 500)
    now = datetime.now(UTC)
    ctx = new_home(work / "home")
    seed(ctx, count, now)
    store = pki.ApplicationStore(work / "store")
    for cert in _rejected_certificates(rejected, now):
        store.add_rejected(cert)
    with ctx.database().write() as session:  # the first seeded application's store is a real folder
        session.execute(db.Application.__table__.update().where(db.Application.id == 1000).values(store_path=str(store.root)))
    add_user(ctx, "bench", "viewer", PASSWORD)
    print(f"-- seeded {count:,} applications, {rejected} rejected certificates in one registered store")
    with TestClient(make_app(ctx), base_url="http://127.0.0.1") as client:
        token = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text).group(1)
        client.post("/login", data={"csrf": token, "username": "bench", "password": PASSWORD})
        for path in ("/fleet", "/fleet?level=critical", "/fleet?sort=not_after&dir=desc", "/rejected", "/api/fleet",
                     "/api/rejected", "/crls"):
            ms, cpu, size = _median_ms(client, path)
            print(f"GET {path:31} median {ms:7.1f} ms (CPU {cpu:6.1f} ms) of 20 after warm-up, {size / 1024:6.1f} kB "
                  "(target < 300 ms)")
    from certmgr.services.fleet import fleet_status

    fleet_status(ctx)
    started, started_cpu = time.perf_counter(), time.process_time()
    rows = fleet_status(ctx)["rows"]
    print(f"{'fleet_status service alone':28} {(time.perf_counter() - started) * 1000:7.1f} ms (CPU "
          f"{(time.process_time() - started_cpu) * 1000:6.1f} ms; baseline: the page minus this is the web layer)")
    print(f"{'timeline SVG':28} {len(timeline_svg(rows, now).encode()) / 1024:7.1f} kB (target < 200 kB)")
    ctx.close()
