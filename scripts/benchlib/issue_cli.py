"""One `certmgr issue` process against the openssl pair an operator would script, the CA key encrypted alike."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from . import section
from .common import new_home, summary, timed
from .issue import OPENSSL_EXT


def _median_seconds(function, rounds: int = 5) -> float:
    return statistics.median(timed(function) for _ in range(rounds))


@section("issue-cli", "one `certmgr issue` process vs `openssl req` + `openssl x509 -req` (CA key at the same KDF)")
def bench_issue_cli(work: Path, quick: bool = False) -> None:
    import ca
    import pki

    rounds = 3 if quick else 9
    ctx = new_home(work / "home", ca_key_size=4096)  # the production default CA
    key_file, cert_file = ctx.home.ca_key_path, ctx.home.ca_cert_path
    ctx.close()
    ca_pem = work / "ca.pem"
    ca_pem.write_bytes(ctx.home.ca_cert_path.with_suffix(".pem").read_bytes())
    ext = work / "ext.cnf"
    ext.write_text(OPENSSL_EXT)
    env = {**os.environ, "CERTMGR_HOME": str(ctx.home.root)}
    certmgr = Path(sys.executable).with_name("certmgr")
    command = [str(certmgr)] if certmgr.exists() else [sys.executable, "-m", "certmgr"]
    print(f"CA: RSA 4096, key file {key_file.name} under {ca.DEFAULT_KEY_ENCRYPTION.describe()}; "
          "openssl signs with that same file (-passin env:CERTMGR_CA_PASSPHRASE)")
    managed, shell = [], []
    for i in range(rounds):  # interleaved: both see the same machine noise
        store = work / "stores" / f"app{i}"
        managed.append(timed(lambda: subprocess.run(
            [*command, "issue", "--app-uri", f"urn:bench:cli{i}", "--store", str(store), "--dns", "localhost", "--ip", "127.0.0.1"],
            env=env, check=True, capture_output=True)))
        started = time.perf_counter()
        subprocess.run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(work / f"{i}.key"),
                        "-out", str(work / f"{i}.csr"), "-subj", f"/CN=app{i}/O=bench"], check=True, capture_output=True)
        subprocess.run(["openssl", "x509", "-req", "-in", str(work / f"{i}.csr"), "-CA", str(ca_pem), "-CAkey", str(key_file),
                        "-passin", "env:CERTMGR_CA_PASSPHRASE", "-CAcreateserial", "-out", str(work / f"{i}.pem"),
                        "-days", "365", "-sha256", "-extfile", str(ext), "-extensions", "v3"],
                       env=env, check=True, capture_output=True)
        shell.append(time.perf_counter() - started)
    print(f"`certmgr issue` (one process)        {summary(managed)}")
    print(f"`openssl req` + `openssl x509 -req`  {summary(shell)}")
    print(f"certmgr / openssl pair (medians): {statistics.median(managed) / statistics.median(shell):.2f}x  (target <= 1.0: no slower)")

    # many certificates: one process, one CA key load, keys generated in parallel
    rows = work / "batch.csv"
    rows.write_text("app_uri,store\n" + "".join(f"urn:bench:batch{i},{work / 'stores' / f'batch{i}'}\n" for i in range(rounds)))
    batch = timed(lambda: subprocess.run([*command, "issue", "--batch", str(rows)], env=env, check=True, capture_output=True))
    print(f"`certmgr issue --batch` of {rounds} (one process)  {batch / rounds * 1000:7.1f} ms per certificate, "
          f"{statistics.median(shell) / (batch / rounds):.2f}x faster than the openssl pair")

    # where one call's time goes: the CA key load (KDF, then the RSA check or certmgr's cheaper one) and imports
    pem, secret = key_file.read_bytes(), os.environ["CERTMGR_CA_PASSPHRASE"].encode()
    public = pki.parse_certificate(cert_file.read_bytes()).public_key()
    full = _median_seconds(lambda: ca.load_private_key_pem(pem, secret))
    fast = _median_seconds(lambda: ca.load_private_key_pem(pem, secret, trusted_public_key=public))
    print(f"CA key load, OpenSSL's RSA consistency check         {full * 1000:7.1f} ms")
    print(f"CA key load, certificate match + one signature (used) {fast * 1000:7.1f} ms")
    imports = _median_seconds(lambda: subprocess.run(
        [sys.executable, "-c", "import certmgr.cli.main, certmgr.services.issuing, certmgr.services.setup, db, sqlalchemy.orm"],
        check=True, capture_output=True), 3)
    bare = _median_seconds(lambda: subprocess.run([sys.executable, "-c", "pass"], check=True, capture_output=True), 3)
    print(f"imports of the issue path (python start {bare * 1000:.0f} ms included) {imports * 1000:7.1f} ms")
