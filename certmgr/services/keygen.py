"""Key pairs for a batch, generated in parallel across all cores.

RSA key generation is CPU-bound and holds the GIL, so a batch goes to a process pool; one key is
generated in-process (starting workers costs more than it saves).
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

from cryptography.hazmat.primitives import serialization

import ca


def _generate_der(bits: int) -> bytes:
    key = ca.generate_rsa_key(bits)
    return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _context():
    """forkserver: workers fork from a clean server process that has ``ca`` imported already.

    Forking certmgr itself could copy threads (the daemon's scheduler, database pools) half-alive;
    spawn would re-import everything in every worker.
    """
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["ca", "certmgr.services.keygen"])
        return context
    return multiprocessing.get_context("spawn")


def generate_keys(sizes: list[int], workers: int | None = None) -> list[object]:
    """One private key per requested size, in order; a failed generation is returned as its exception."""
    workers = workers or default_workers()
    if len(sizes) <= 1 or workers <= 1:
        results: list[object] = []
        for bits in sizes:
            try:
                results.append(ca.generate_rsa_key(bits))
            except Exception as exc:  # reported per item, the batch goes on
                results.append(exc)
        return results
    context = _context()
    with ProcessPoolExecutor(max_workers=min(workers, len(sizes)), mp_context=context) as pool:
        futures = [pool.submit(_generate_der, bits) for bits in sizes]
        results = []
        for future in futures:
            try:
                # our own workers just made these keys: skip the ~65 ms RSA consistency check per key
                results.append(serialization.load_der_private_key(future.result(), None, unsafe_skip_rsa_key_validation=True))
            except Exception as exc:
                results.append(exc)
        return results
