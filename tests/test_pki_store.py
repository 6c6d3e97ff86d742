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


def cert_with_cn(test_ca, key, cn):
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, cn)]))
        .issuer_name(test_ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(T0)
        .not_valid_after(T0 + timedelta(days=1))
        .sign(test_ca.private_key, hashes.SHA256())
    )


# Names that would escape the folder (or hide in it) are mapped to a stem inside it, never refused:
# an operator cannot change a vendor's CN.
@pytest.mark.parametrize("cn", ["../evil", "a/b", "x\x00y", "..", ".hidden", "back\\slash", "c:\\evil", " .. /evil. "])
@pytest.mark.parametrize("layout", ["ua-net", "node-opcua", "open62541"])
def test_names_that_would_escape_the_folder_stay_inside(tmp_path, test_ca, key_pool, cn, layout):
    key = key_pool.get()
    cert = cert_with_cn(test_ca, key, cn)
    store = pki.ApplicationStore(tmp_path / "pki", layout)
    written = [store.add_certificate(cert), store.add_rejected(cert), store.install_own(cert, ca.private_key_pem(key)).cert_path]
    for path in written:
        assert path.resolve().is_relative_to((tmp_path / "pki").resolve())
        assert not path.name.startswith(".")
        assert path.is_file()
    assert not (tmp_path / "evil").exists()
    assert not any("evil" in p.name for p in tmp_path.iterdir())


@pytest.mark.parametrize(
    ("cn", "stem"),
    [
        ("historian", "historian"),  # plain CNs keep the names existing stores already hold
        ("PI Connector (plant 2)", "PI Connector (plant 2)"),
        ("newcomer urn:vendor:kepware01@vm", "newcomer urn_vendor_kepware01@vm"),
        ('a<b>c"d|e?f*g\\h/i', "a_b_c_d_e_f_g_h_i"),
        ("tab\there\x7f", "tab_here_"),
        ("...hidden", "hidden"),
        ("trailing. . ", "trailing"),
        ("", "certificate"),
        ("..", "certificate"),
    ],
)
def test_safe_stem_mapping(cn, stem):
    assert pki.safe_stem(cn) == stem


def test_safe_stem_bounds_length_in_bytes():
    stem = pki.safe_stem("\u00e9" * 200)
    assert len(stem.encode()) <= 120 and stem == "\u00e9" * 60
    assert pki.safe_stem("x" * 119 + "\u00e9") == "x" * 119  # never a half character


def test_cns_that_map_to_one_stem_stay_distinct_files(tmp_path, test_ca, key_pool):
    store = pki.ApplicationStore(tmp_path / "pki")
    first, second = cert_with_cn(test_ca, key_pool.get(), "a:b"), cert_with_cn(test_ca, key_pool.get(), "a/b")
    paths = {store.add_certificate(first), store.add_certificate(second)}
    assert len(paths) == 2
    assert {p.name for p in paths} == {f"a_b [{pki.thumbprint(c)}].der" for c in (first, second)}


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
        pki.ApplicationStore(tmp_path, "milo")


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


def renewals(store, test_ca, key_pool, count, keep=1):
    pairs = []
    for n in range(count):
        key = key_pool.get()
        cert = ca.build_application_certificate(make_identity("urn:test:app", "app"), key.public_key(), test_ca, now=T0 + timedelta(days=n))
        store.install_own(cert, ca.private_key_pem(key), keep_history=keep)
        pairs.append(cert)
    return pairs


def history_names(store):
    return sorted(p.name for p in store.history_dir.iterdir())


@pytest.mark.parametrize("keep", [0, 1, 2])
def test_history_keeps_the_keys_of_at_most_keep_previous_pairs(tmp_path, test_ca, key_pool, keep):
    store = pki.ApplicationStore(tmp_path / "pki")
    certs = renewals(store, test_ca, key_pool, 4, keep=keep)
    previous = certs[:-1]
    kept = {pki.thumbprint(c) for c in previous[len(previous) - keep:]} if keep else set()
    for cert in previous:
        stem = f"app [{pki.thumbprint(cert)}]"
        assert (store.history_dir / f"{stem}.der").is_file()  # the certificate stays, it is public
        assert (store.history_dir / f"{stem}.pem").exists() == (pki.thumbprint(cert) in kept)
    assert (store.history_pair(pki.thumbprint(previous[-1])) is not None) == (keep > 0)


def test_history_default_keeps_one_previous_key(tmp_path, test_ca, key_pool):
    store = pki.ApplicationStore(tmp_path / "pki")
    certs = renewals(store, test_ca, key_pool, 3)
    assert [n for n in history_names(store) if n.endswith(".pem")] == [f"app [{pki.thumbprint(certs[1])}].pem"]


def test_destroy_secret_overwrites_before_unlinking(tmp_path, monkeypatch):
    from pki import files

    secret = tmp_path / "key.pem"
    secret.write_bytes(b"SECRET" * 1000)
    seen = {}
    real_unlink = type(secret).unlink

    def spy(self, missing_ok=False):
        if self.parent == secret.parent and self.name.startswith(files.DESTROY_PREFIX):  # renamed away first
            seen["bytes"] = self.read_bytes()
        return real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(type(secret), "unlink", spy)
    assert files.destroy_secret(secret) is True
    assert seen["bytes"] == bytes(6000)  # zeros on disk before the name went away
    assert not secret.exists()
    assert files.destroy_secret(secret) is False


def test_destroy_secret_does_not_follow_a_link(tmp_path):
    from pki import files

    target = tmp_path / "elsewhere.txt"
    target.write_bytes(b"keep me")
    link = tmp_path / "key.pem"
    link.symlink_to(target)
    files.destroy_secret(link)
    assert not link.is_symlink() and target.read_bytes() == b"keep me"


def test_unstage_destroys_the_staged_key(tmp_path, test_ca, key_pool, monkeypatch):
    store = pki.ApplicationStore(tmp_path / "pki")
    cert, key_pem = issue(test_ca, key_pool)
    _, key_path = store.stage_own(cert, key_pem)
    destroyed = []
    real = store_module.destroy_secret
    monkeypatch.setattr(store_module, "destroy_secret", lambda p: destroyed.append(p) or real(p))
    store.unstage(pki.thumbprint(cert))
    assert destroyed == [key_path]
    assert list(store.staged_dir.iterdir()) == []


def test_destroy_key_removes_every_copy_of_one_key(tmp_path, test_ca, key_pool):
    store = pki.ApplicationStore(tmp_path / "pki")
    first, second = renewals(store, test_ca, key_pool, 2)
    third, third_key = issue(test_ca, key_pool, cn="app")
    store.stage_own(third, third_key)
    thumb = pki.thumbprint(first)
    assert store.destroy_key(thumb) == [store.history_dir / f"app [{thumb}].pem"]
    assert (store.history_dir / f"app [{thumb}].der").is_file()
    assert store.destroy_key(pki.thumbprint(third)) == [store.staged_dir / f"app [{pki.thumbprint(third)}].pem"]
    # the current key goes only when asked
    assert store.destroy_key(pki.thumbprint(second)) == []
    assert store.own().key_path.exists()
    assert store.destroy_key(pki.thumbprint(second), include_current=True) == [store.own().key_path]
    assert not store.own().key_path.exists()


# node-opcua's certificate.pem with the chain -------------------------------------------------------------
def test_node_opcua_own_file_holds_leaf_then_chain(tmp_path, test_ca, key_pool):
    store = pki.ApplicationStore(tmp_path / "pki", "node-opcua")
    cert, key_pem = issue(test_ca, key_pool)
    installed = store.install_own(cert, key_pem, chain=(test_ca.certificate,))
    blocks = x509.load_pem_x509_certificates(installed.cert_path.read_bytes())
    assert blocks == [cert, test_ca.certificate]
    assert store.own().certificate == cert  # every certmgr reader takes the leaf
    assert pki.parse_certificate(installed.cert_path.read_bytes()) == cert
    assert store.own_chain() == (test_ca.certificate,)
    assert [c.value for c in store.history()] == []
    # a renewal rolled back keeps the chain in the restored file
    new, new_key = issue(test_ca, key_pool)
    store.install_own(new, new_key, chain=(test_ca.certificate,))
    store.revert_own(pki.thumbprint(cert), pki.thumbprint(new))
    assert x509.load_pem_x509_certificates(store.own().cert_path.read_bytes()) == [cert, test_ca.certificate]
    assert [c.value for c in store.history() if c.value is not None] and all(
        pki.parse_certificate(p.read_bytes()) for p in store.history_dir.glob("*.der"))


def test_der_own_files_ignore_the_chain(tmp_path, test_ca, key_pool):
    for layout in ("ua-net", "open62541"):
        store = pki.ApplicationStore(tmp_path / layout, layout)
        cert, key_pem = issue(test_ca, key_pool)
        installed = store.install_own(cert, key_pem, chain=(test_ca.certificate,))
        assert installed.cert_path.read_bytes() == der(cert)


def test_staged_pair_keeps_its_chain(tmp_path, test_ca, key_pool):
    store = pki.ApplicationStore(tmp_path / "pki", "node-opcua")
    cert, key_pem = issue(test_ca, key_pool)
    store.stage_own(cert, key_pem, chain=(test_ca.certificate,))
    assert store.staged_chain(pki.thumbprint(cert)) == (test_ca.certificate,)
    store.unstage(pki.thumbprint(cert))
    assert list(store.staged_dir.iterdir()) == []


# open62541 layout -------------------------------------------------------------------------------------
def test_open62541_own_names_never_change_across_renewals(tmp_path, test_ca, key_pool):
    store = pki.ApplicationStore(tmp_path / "pki", "open62541")
    paths = set()
    for n in range(2):
        cert, key_pem = issue(test_ca, key_pool)
        installed = store.install_own(cert, key_pem)
        paths.add((installed.cert_path, installed.key_path))
        assert x509.load_der_x509_certificate(installed.cert_path.read_bytes()) == cert
        assert mode(installed.key_path) == 0o600
    assert paths == {(tmp_path / "pki/own/certs/certificate.der", tmp_path / "pki/own/private/private_key.pem")}
    assert pki.detect_layout(tmp_path / "pki") == "open62541"


def test_open62541_every_crl_goes_to_the_one_crl_folder(tmp_path, test_ca, foreign_ca):
    store = pki.ApplicationStore(tmp_path / "pki", "open62541")
    store.create()
    store.add_certificate(test_ca.certificate, pki.TRUSTED)
    store.add_certificate(foreign_ca.certificate, pki.ISSUER)
    store.add_certificate(foreign_ca.certificate, pki.TRUSTED)
    assert store.crl_dir(pki.TRUSTED) == store.crl_dir(pki.ISSUER) == tmp_path / "pki" / "crl"
    store.publish_crl_where_held(der(crl_for(test_ca, 1)), test_ca.certificate, 1)
    store.publish_crl_where_held(der(crl_for(foreign_ca, 4)), foreign_ca.certificate, 4)
    files = sorted(p.relative_to(store.root).as_posix() for p in store.root.rglob("*.crl"))
    assert files == [f"crl/{store.layout.crl_name(c.certificate, n)}" for c, n in sorted(
        ((test_ca, 1), (foreign_ca, 4)), key=lambda cn: store.layout.crl_name(cn[0].certificate, cn[1]))]
    assert not (store.root / "trusted" / "crl").exists() and not (store.root / "issuer" / "crl").exists()
    # a newer CRL replaces the CA's older one in the shared folder and leaves the other CA's alone
    store.publish_crl_where_held(der(crl_for(test_ca, 2)), test_ca.certificate, 2)
    assert sorted(p.name for p in (store.root / "crl").iterdir()) == sorted(
        [store.layout.crl_name(test_ca.certificate, 2), store.layout.crl_name(foreign_ca.certificate, 4)])


def test_open62541_rejected_name_is_the_thumbprint(tmp_path, test_ca, key_pool):
    store = pki.ApplicationStore(tmp_path / "pki", "open62541")
    cert, _ = issue(test_ca, key_pool, cn="newcomer urn:vendor:x")
    assert store.add_rejected(cert) == tmp_path / "pki" / "rejected" / "certs" / f"{pki.thumbprint(cert)}.der"
    assert store.rejected()[0].value == cert
