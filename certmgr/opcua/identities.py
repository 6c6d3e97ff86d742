"""Channel identities read from application stores."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import ca
import pki

from ..errors import OperationFailed
from .channel import Identity
from .validator import StoreValidator


def identity_from_store(
    store: pki.ApplicationStore,
    app_uri: str,
    *,
    peer_role: str,
    clock: Callable[[], datetime],
    record_rejected: bool = False,
) -> Identity:
    """The store's own certificate and key, validating peers with the store's trust material."""
    pair = store.own()
    if pair is None:
        raise OperationFailed(f"store {store.root} holds no own certificate", "issue one with `certmgr issue`")
    try:
        key = ca.load_private_key_pem(store.read_own_key(pair))
    except (ca.CAError, pki.StoreError) as exc:
        raise OperationFailed(f"cannot use the private key of {store.root}: {exc}", "reissue with --force") from None
    if not ca.key_matches_certificate(key, pair.certificate.public_key()):
        raise OperationFailed(f"the private key in {store.root} does not match its certificate", "reissue with --force")
    validator = StoreValidator(store, peer_role, clock, record_rejected=record_rejected)
    return Identity(app_uri, pair.certificate, key, validator)
