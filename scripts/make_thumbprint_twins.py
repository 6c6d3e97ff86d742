#!/usr/bin/env python3
"""Make two distinct certificates whose SHA-1 thumbprints share their first 8 hex digits.

Used once to create tests/data/twin-a.der and twin-b.der, which test that `certmgr store trust` refuses
an ambiguous thumbprint prefix. A birthday search over 32 bits needs ~80,000 certificates; Ed25519 keeps
each one cheap. Run: .venv/bin/python scripts/make_thumbprint_twins.py tests/data
"""

import hashlib
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import NameOID


def main(out: Path) -> None:
    key = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(32))
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "twin")])
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    base = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .not_valid_before(start).not_valid_after(start + timedelta(days=3650))
    )
    seen: dict[str, bytes] = {}
    serial = 1
    while True:
        der = base.serial_number(serial).sign(key, None).public_bytes(serialization.Encoding.DER)
        prefix = hashlib.sha1(der).hexdigest()[:8]
        if prefix in seen:
            out.mkdir(parents=True, exist_ok=True)
            (out / "twin-a.der").write_bytes(seen[prefix])
            (out / "twin-b.der").write_bytes(der)
            print(f"prefix {prefix.upper()} after {serial} certificates")
            return
        seen[prefix] = der
        serial += 1


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "tests/data"))
