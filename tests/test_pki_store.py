"""Certificate stores: layouts, atomic writes, permissions, crash safety, CRL file handling."""

from __future__ import annotations

import os
import stat
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

import ca
import pki
from pki import store as store_module
from tests.conftest import T0, make_identity
from tests.helpers import der


def issue(test_ca, key_pool, cn="app", uri="urn:test:app"):
    key = key_pool.get()
    cert = ca.build_application_certificate(make_identity(uri, cn), key.public_key(), test_ca, now=T0)
    return cert, ca.private_key_pem(key)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_ua_net_layout_names_and_modes(tmp_path, test_ca, key_pool):
    store = pki.ApplicationStore(tmp_path / "pki", "ua-net")
    cert, key_pem = issue(test_ca, key_pool, cn="historian")
    installed = store.install_own(cert, key_pem)
    thumb = pki.thumbprint(cert)
    assert thumb == cert.fingerprint(hashes.SHA1()).hex().upper()
    assert installed.cert_path == tmp_path / "pki" / "own" / "certs" / f"historian [{thumb}].der"
    assert installed.key_path == tmp_path / "pki" / "own" / "private" / f"historian [{thumb}].pem"
    assert x509.load_der_x509_certificate(installed.cert_path.read_bytes()) == cert
    assert mode(installed.key_path) == 0o600
    assert mode(store.own_private_dir) == 0o700
    for part in ("trusted/certs", "trusted/crl", "issuer/certs", "issuer/crl", "rejected/certs"):
        assert (tmp_path / "pki" / part).is_dir(), part
    ca_path = store.add_certificate(test_ca.certificate, pki.TRUSTED)
    assert ca_path.name == f"Test CA [{pki.thumbprint(test_ca.certificate)}].der"
    assert store.own().certificate == cert


def test_node_opcua_layout_names(tmp_path, test_ca, key_pool):
    store = pki.ApplicationStore(tmp_path / "pki", "node-opcua")
    cert, key_pem = issue(test_ca, key_pool)
    installed = store.install_own(cert, key_pem)
    assert installed.cert_path == tmp_path / "pki" / "own" / "certs" / "certificate.pem"
    assert installed.key_path == tmp_path / "pki" / "own" / "private" / "private_key.pem"
    assert x509.load_pem_x509_certificate(installed.cert_path.read_bytes()) == cert
    ca_path = store.add_certificate(test_ca.certificate, pki.TRUSTED)
    assert ca_path.name == f"Test CA[{pki.thumbprint(test_ca.certificate).lower()}].der"
    assert ".der" in ca_path.name  # node-opcua reads DER only from names containing ".der"
    for part in ("trusted/certs", "trusted/crl", "issuers/certs", "issuers/crl", "rejected"):
        assert (tmp_path / "pki" / part).is_dir(), part
    rejected = store.add_rejected(cert)
    assert rejected.parent == tmp_path / "pki" / "rejected"
    assert rejected.name == f"app[{pki.thumbprint(cert).lower()}].pem"
    assert rejected.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")


def test_reinstall_archives_previous_pair(tmp_path, test_ca, key_pool):
    for layout in ("ua-net", "node-opcua"):
        store = pki.ApplicationStore(tmp_path / layout, layout)
        first, first_key = issue(test_ca, key_pool)
        second, second_key = issue(test_ca, key_pool)
        store.install_own(first, first_key)
        store.install_own(second, second_key)
        assert [p.certificate for p in store.own_pairs()] == [second]
        assert store.read_own_key(store.own()) == second_key
        archived = store.history_pair(pki.thumbprint(first))
        assert archived == (first, first_key)
        key_files = [p for p in store.history_dir.iterdir() if p.suffix == ".pem"]
        assert all(mode(p) == 0o600 for p in key_files)


@pytest.mark.parametrize("layout", ["ua-net", "node-opcua"])
def test_failure_between_key_and_certificate_leaves_store_as_it_was(tmp_path, test_ca, key_pool, monkeypatch, layout):
    store = pki.ApplicationStore(tmp_path / "pki", layout)
    old, old_key = issue(test_ca, key_pool)
    store.install_own(old, old_key)
    store.add_certificate(test_ca.certificate)
    before = store.file_listing()
    new, new_key = issue(test_ca, key_pool)

    real_replace = store_module.replace_into
    calls = []

    def crash_on_certificate(temp, target):
        calls.append(target)
        if target.parent == store.own_certs_dir:
            raise OSError(28, "No space left on device")
        return real_replace(temp, target)

    monkeypatch.setattr(store_module, "exchange", lambda a, b: False)  # the rename fallback
    monkeypatch.setattr(store_module, "replace_into", crash_on_certificate)
    with pytest.raises(OSError, match="No space"):
        store.install_own(new, new_key)
    monkeypatch.undo()
    after = store.file_listing()
    # history may hold an archived copy of the old pair; the folders a stack reads are unchanged
    visible = {k: v for k, v in after.items() if not k.startswith(("own/history", ".certmgr"))}
    assert visible == {k: v for k, v in before.items() if not k.startswith(("own/history", ".certmgr"))}
    assert any(t.parent == store.own_private_dir for t in calls), "the key was written before the crash"
    assert store.own().certificate == old
    assert [p.name for p in store.staging_dir.iterdir()] in ([], ["lock"])


def test_first_install_crash_leaves_no_key(tmp_path, test_ca, key_pool, monkeypatch):
    store = pki.ApplicationStore(tmp_path / "pki")
    cert, key_pem = issue(test_ca, key_pool)
    real_replace = store_module.replace_into

    def crash(temp, target):
        if target.parent == store.own_certs_dir:
            raise OSError(5, "I/O error")
        return real_replace(temp, target)

    monkeypatch.setattr(store_module, "exchange", lambda a, b: False)  # the rename fallback
    monkeypatch.setattr(store_module, "replace_into", crash)
    with pytest.raises(OSError):
        store.install_own(cert, key_pem)
    assert list(store.own_private_dir.iterdir()) == []
    assert list(store.own_certs_dir.iterdir()) == []


@pytest.mark.parametrize("cn", ["../evil", "a/b", "x\x00y", "..", ".hidden", "back\\slash"])
def test_names_that_escape_the_folder_are_refused(tmp_path, test_ca, key_pool, cn):
    key = key_pool.get()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, cn)]))
        .issuer_name(test_ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(T0)
        .not_valid_after(T0 + timedelta(days=1))
        .sign(test_ca.private_key, hashes.SHA256())
    )
    store = pki.ApplicationStore(tmp_path / "pki")
    with pytest.raises(pki.UnsafeNameError):
        store.install_own(cert, ca.private_key_pem(key))
    assert not any(p.is_file() for p in tmp_path.rglob("*") if "evil" in p.name)
    assert not (tmp_path / "evil").exists()


def test_store_path_that_is_a_file_or_unwritable(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(pki.StoreError, match="is a file"):
        pki.ApplicationStore(blocker).check_usable()
    with pytest.raises(pki.StoreError, match="is a file"):
        pki.ApplicationStore(blocker / "sub").check_usable()
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if os.geteuid() != 0:  # root writes anywhere
        with pytest.raises(pki.StoreError, match="not writable"):
            pki.ApplicationStore(locked / "pki").check_usable()
    with pytest.raises(pki.StoreError, match="unknown store layout"):
        pki.ApplicationStore(tmp_path, "open62541")


@pytest.mark.parametrize("linked", [".", "trusted", "trusted/crl"])
def test_a_link_anywhere_inside_the_store_is_refused(tmp_path, test_ca, linked):
    """Stores are often writable by the application's user: a link planted at any level (the root included)
    must not make certmgr write the CA, its CRL or anything else where the link points."""
    root, outside = tmp_path / "pki", tmp_path / "outside"
    outside.mkdir()
    if linked == ".":
        root.symlink_to(outside)
    else:
        (root / linked).parent.mkdir(parents=True, exist_ok=True)
        (root / linked).symlink_to(outside)
    store = pki.ApplicationStore(root)
    if linked == "trusted/crl":  # the certificate folder is real: that write may go on
        assert store.add_certificate(test_ca.certificate, pki.TRUSTED).parent == root / "trusted" / "certs"
    else:
        with pytest.raises(pki.StoreError, match="symbolic link"):
            store.add_certificate(test_ca.certificate, pki.TRUSTED)
    with pytest.raises(pki.StoreError, match="symbolic link"):
        store.publish_crl(der(crl_for(test_ca, 1)), test_ca.certificate, 1)
    if linked == ".":
        with pytest.raises(pki.StoreError, match="symbolic link"):
            store.check_usable()
    assert list(outside.iterdir()) == []


def crl_for(issuer, number, days=30, revoked=()):
    return ca.build_crl(issuer, number=number, this_update=T0, next_update=T0 + timedelta(days=days), revoked=revoked)


def test_publish_crl_writes_new_name_and_removes_only_that_cas_old_crl(tmp_path, test_ca, foreign_ca):
    store = pki.ApplicationStore(tmp_path / "pki")
    store.create()
    foreign = store.publish_crl(der(crl_for(foreign_ca, 1)), foreign_ca.certificate, 1)
    unrelated = store.crl_dir(pki.TRUSTED) / "notes.txt"
    unrelated.write_text("operator's notes")
    first = store.publish_crl(der(crl_for(test_ca, 1)), test_ca.certificate, 1)
    inode_first = os.stat(first.path).st_ino
    second = store.publish_crl(der(crl_for(test_ca, 2)), test_ca.certificate, 2)
    assert second.path != first.path and "crl2" in second.path.name
    assert not first.path.exists()
    assert second.removed == [first.path]
    assert os.stat(second.path).st_ino != inode_first
    assert foreign.path.exists() and unrelated.exists()
    again = store.publish_crl(der(crl_for(test_ca, 2)), test_ca.certificate, 2)
    assert again.written is False or again.path == second.path
    names = sorted(p.name for p in store.crl_dir(pki.TRUSTED).iterdir())
    assert len([n for n in names if n.startswith("Test CA")]) == 1


def test_publish_crl_replaces_a_forged_file_under_our_name(tmp_path, test_ca, foreign_ca):
    store = pki.ApplicationStore(tmp_path / "pki")
    store.create()
    forged_name = store.crl_dir(pki.TRUSTED) / store.layout.crl_name(test_ca.certificate, 1)
    forged_name.write_bytes(crl_for(foreign_ca, 1).public_bytes(serialization.Encoding.DER))
    garbage = store.crl_dir(pki.TRUSTED) / store.layout.crl_name(test_ca.certificate, 0)
    garbage.write_bytes(b"garbage")
    result = store.publish_crl(der(crl_for(test_ca, 3)), test_ca.certificate, 3)
    assert not forged_name.exists() and not garbage.exists()
    assert sorted(result.removed) == sorted([forged_name, garbage])


def test_a_foreign_file_under_the_new_crls_name_is_never_recreated_in_place(tmp_path, test_ca, foreign_ca):
    """node-opcua misses a CRL deleted and at once re-created under the same name: the new CRL takes another."""
    store = pki.ApplicationStore(tmp_path / "pki")
    store.create()
    squatter = store.crl_dir(pki.TRUSTED) / store.layout.crl_name(test_ca.certificate, 3)
    squatter.write_bytes(der(crl_for(foreign_ca, 3)))
    result = store.publish_crl(der(crl_for(test_ca, 3)), test_ca.certificate, 3)
    assert result.written and result.path != squatter and "crl3-2" in result.path.name
    assert result.path.read_bytes() == der(crl_for(test_ca, 3)) and not squatter.exists()
    assert store.publish_crl(der(crl_for(test_ca, 3)), test_ca.certificate, 3).written is False
    assert [p.name for p in store.crl_dir(pki.TRUSTED).iterdir()] == [result.path.name]
    newer = store.publish_crl(der(crl_for(test_ca, 4)), test_ca.certificate, 4)
    assert newer.removed == [result.path] and "crl4.crl" in newer.path.name


def test_atomic_write_never_exposes_a_partial_file(tmp_path):
    from pki.files import atomic_write

    target = tmp_path / "out.crl"
    staging = tmp_path / "staging"
    staging.mkdir()
    atomic_write(target, b"A" * 100_000, staging=staging)
    inode = os.stat(target).st_ino
    atomic_write(target, b"B" * 200_000, staging=staging)
    assert target.read_bytes() == b"B" * 200_000
    assert os.stat(target).st_ino != inode  # replaced by rename, never rewritten in place
    assert list(staging.iterdir()) == []
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_readers_skip_lookalike_names_and_report_garbage(tmp_path, test_ca):
    store = pki.ApplicationStore(tmp_path / "pki")
    store.create()
    folder = store.certs_dir(pki.TRUSTED)
    (folder / "border.txt").write_text("not a certificate")
    (folder / "broken.der").write_bytes(b"\x30\x03\x02\x01")
    store.add_certificate(test_ca.certificate)
    loaded = store.certificates(pki.TRUSTED)
    assert sorted(p.path.name for p in loaded) == sorted(["broken.der", store.layout.peer_cert_name(test_ca.certificate)])
    broken = next(p for p in loaded if p.path.name == "broken.der")
    assert broken.value is None and "not a certificate" in broken.error


def test_repair_after_a_crash_between_key_and_certificate(tmp_path, test_ca, key_pool, monkeypatch):
    """node-opcua's fixed names: the new key landed, the certificate did not, and the process died."""
    store = pki.ApplicationStore(tmp_path / "pki", "node-opcua")
    old, old_key = issue(test_ca, key_pool)
    store.install_own(old, old_key)
    new, new_key = issue(test_ca, key_pool)
    real_replace = store_module.replace_into

    def die_after_key(temp, target):
        real_replace(temp, target)
        if target.parent == store.own_private_dir:
            raise SystemExit("killed")  # no cleanup handler runs for a killed process; SystemExit skips except OSError

    monkeypatch.setattr(store_module, "exchange", lambda a, b: False)  # the rename fallback
    monkeypatch.setattr(store_module, "replace_into", die_after_key)
    with pytest.raises(SystemExit):
        store._archive(store.own().cert_path, store.own().key_path)
        store_module.replace_into(store_module.write_temp(store.staging_dir, new_key, 0o600), store.own_private_dir / "private_key.pem")
    monkeypatch.undo()
    own = store.own()
    matches = lambda pem, cert: ca.key_matches_certificate(ca.load_private_key_pem(pem), cert.public_key())  # noqa: E731
    assert own.certificate == old and not matches(store.read_own_key(own), old)
    repairs = store.repair_own_pair(matches)
    assert repairs and "restored" in repairs[0]
    assert store.read_own_key(store.own()) == old_key and store.own().certificate == old
    assert store.repair_own_pair(matches) == []


class Cut(BaseException):
    """A kill at that instant: nothing after it runs."""


@pytest.mark.parametrize("layout", ["ua-net", "node-opcua"])
@pytest.mark.parametrize("moment", ["before the exchange", "after the exchange"])
def test_a_switch_cut_at_any_moment_shows_one_matching_pair(tmp_path, test_ca, key_pool, monkeypatch, layout, moment):
    """The own folder is exchanged in one step: cut before it, the old pair is current; cut after it, the new one;
    never two own certificates, never a key that does not match; the leftover tree goes at the next repair."""
    from pki import own_switch

    store = pki.ApplicationStore(tmp_path / "store", layout)
    old_key, new_key = key_pool.get(2048), key_pool.get(2048)
    old = ca.build_application_certificate(make_identity(), old_key.public_key(), test_ca, now=T0)
    new = ca.build_application_certificate(make_identity(), new_key.public_key(), test_ca, now=T0)
    store.install_own(old, ca.private_key_pem(old_key))
    real_exchange, real_remove = store_module.exchange, store_module.remove_tree
    calls = []

    def cut_exchange(a, b):
        if moment == "before the exchange":
            raise Cut()
        return real_exchange(a, b)

    def cut_cleanup(root):
        calls.append(root)
        if moment == "after the exchange":
            raise Cut()
        return real_remove(root)

    monkeypatch.setattr(store_module, "exchange", cut_exchange)
    monkeypatch.setattr(store_module, "remove_tree", cut_cleanup)
    with pytest.raises(Cut):
        store.install_own(new, ca.private_key_pem(new_key))
    monkeypatch.undo()
    pairs = store.own_pairs()
    assert len(pairs) == 1
    expected, key = (old, old_key) if moment == "before the exchange" else (new, new_key)
    assert pairs[0].thumbprint == pki.thumbprint(expected)
    assert ca.key_matches_certificate(ca.load_private_key_pem(pairs[0].key_path.read_bytes()), expected.public_key())
    assert oct(pairs[0].key_path.stat().st_mode & 0o777) == "0o600"
    leftovers = list(store.staging_dir.glob(own_switch.NEXT_PREFIX + "*"))
    # after the exchange the other half is still there (hidden from every stack); a cut the process sees (an
    # exception, Ctrl-C) before it removes its own half; a SIGKILL would leave it, as after the exchange
    assert bool(leftovers) == (moment == "after the exchange")
    done = store.repair_own_pair(lambda pem, cert: ca.key_matches_certificate(ca.load_private_key_pem(pem), cert.public_key()))
    assert any("own-folder switch" in line for line in done) == (moment == "after the exchange")
    assert not list(store.staging_dir.glob(own_switch.NEXT_PREFIX + "*"))  # ... until the next repair
    assert store.own().thumbprint == pki.thumbprint(expected)


def test_history_keeps_the_keys_of_the_newest_pairs_only(tmp_path, test_ca, key_pool):
    store = pki.ApplicationStore(tmp_path / "store")
    certs = []
    for _ in range(4):
        key = key_pool.get(2048)
        cert = ca.build_application_certificate(make_identity(), key.public_key(), test_ca, now=T0)
        store.install_own(cert, ca.private_key_pem(key), keep_history=1)
        certs.append(cert)
    history = store.history_dir
    keys = sorted(p.name for p in history.glob("*.pem"))
    assert keys == [f"app [{pki.thumbprint(certs[2])}].pem"]  # only the previous pair can be rolled back to
    assert len(list(history.glob("*.der"))) == 3  # every earlier certificate stays known
