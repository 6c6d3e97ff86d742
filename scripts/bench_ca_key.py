"""Cost of loading the CA key file: KDF and RSA consistency check, for issue 16.

    .venv/bin/python scripts/bench_ca_key.py [--bits 4096] [--rounds 5]

Prints the median seconds of: decrypting + loading with OpenSSL's RSA check (the old path), decrypting +
loading with the trusted-certificate shortcut of ca.load_private_key_pem, for the old KDF (cryptography's
BestAvailableEncryption, PBKDF2 2048 iterations) and for the current ones.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives import serialization  # noqa: E402

import ca  # noqa: E402


def median(fn, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bits", type=int, default=4096)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    key = ca.generate_rsa_key(args.bits)
    public = key.public_key()
    secret = b"bench passphrase"
    old = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(secret))
    files = {"PBKDF2 2048 (old default)": old}
    for spec in (ca.DEFAULT_KEY_ENCRYPTION, ca.KeyEncryption(kdf="pbkdf2")):
        files[spec.describe()] = ca.encrypted_private_key_pem(key, secret, spec)
    print(f"RSA {args.bits}, median of {args.rounds}")
    for name, pem in files.items():
        full = median(lambda: ca.load_private_key_pem(pem, secret), args.rounds)
        fast = median(lambda: ca.load_private_key_pem(pem, secret, trusted_public_key=public), args.rounds)
        print(f"  {name:55s} full check {full:.3f} s   trusted shortcut {fast:.3f} s")


if __name__ == "__main__":
    main()
