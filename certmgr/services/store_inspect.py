"""``certmgr store status`` and ``store rejected``: what a store holds and what is wrong with it.

Works on any store of a supported layout, certmgr-managed or not, and never crashes on a bad file:
unreadable files are named as problems.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509

import ca
import pki

from ..context import AppContext
from ..errors import InputError

ERROR, WARNING = "error", "warning"
SOON = timedelta(days=30)
CRL_SOON = timedelta(days=7)


@dataclass
class Problem:
    severity: str
    where: str
    message: str

    def as_dict(self) -> dict:
        return {"severity": self.severity, "where": self.where, "message": self.message}


@dataclass
class StoreReport:
    root: str
    layout: str
    own: dict | None = None
    trusted: list[dict] = field(default_factory=list)
    issuers: list[dict] = field(default_factory=list)
    crls: list[dict] = field(default_factory=list)
    rejected: list[dict] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(p.severity == ERROR for p in self.problems)

    def as_dict(self) -> dict:
        return {
            "store": self.root, "layout": self.layout, "ok": self.ok, "own": self.own, "trusted": self.trusted,
            "issuers": self.issuers, "crls": self.crls, "rejected": self.rejected,
            "problems": [p.as_dict() for p in self.problems],
        }


def open_store(ctx: AppContext | None, path: Path, layout: str | None) -> pki.ApplicationStore:
    root = Path(path).expanduser()
    if not root.is_dir():
        raise InputError(f"store folder {root} does not exist", "give the folder that holds own/, trusted/ and rejected/")
    layout = layout or _registered_layout(ctx, root) or pki.detect_layout(root)
    if layout is None:
        raise InputError(f"{root} does not look like an OPC UA certificate store", "pass --layout ua-net or --layout node-opcua")
    return pki.ApplicationStore(root, layout)


def _registered_layout(ctx: AppContext | None, root: Path) -> str | None:
    if ctx is None or not ctx.home.is_initialised():
        return None
    from sqlalchemy import select

    import db

    with ctx.database().read() as session:
        return session.scalars(select(db.Application.layout).where(db.Application.store_path == str(root))).first()


def describe(cert: x509.Certificate) -> dict:
    key = cert.public_key()
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    except (x509.ExtensionNotFound, ValueError):
        uris = []
    try:
        algorithm = cert.signature_hash_algorithm.name if cert.signature_hash_algorithm else "unknown"
    except Exception:
        algorithm = cert.signature_algorithm_oid.dotted_string
    return {
        "subject": cert.subject.rfc4514_string(),
        "app_uri": uris[0] if uris else None,
        "issuer": cert.issuer.rfc4514_string(),
        "thumbprint": pki.thumbprint(cert),
        "serial": format(cert.serial_number, "x"),
        "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "key": f"{type(key).__name__.replace('PublicKey', '').replace('_', '')} {getattr(key, 'key_size', '?')}",
        "signature": algorithm,
    }


def _validity_problems(cert: x509.Certificate, where: str, now: datetime, what: str) -> list[Problem]:
    if cert.not_valid_after_utc < now:
        return [Problem(ERROR, where, f"{what} expired on {cert.not_valid_after_utc:%Y-%m-%d}")]
    if cert.not_valid_before_utc > now:
        return [Problem(ERROR, where, f"{what} is not valid before {cert.not_valid_before_utc:%Y-%m-%d} (check clocks)")]
    if cert.not_valid_after_utc - now < SOON:
        days = (cert.not_valid_after_utc - now).days
        return [Problem(WARNING, where, f"{what} expires in {days} days ({cert.not_valid_after_utc:%Y-%m-%d})")]
    return []


# Profile findings a store keeps for every certificate it holds, in ca's one wording (issue 13: one rule).
_WEAKNESS_CODES = ("signature-sha1", "key-size-small")


def _weakness(cert: x509.Certificate, where: str) -> list[Problem]:
    """Weak key or SHA-1 signature of a trusted or issuer certificate, worded by ca.Finding."""
    check = ca.check_ca_certificate if pki.is_ca(cert) else ca.check_application_certificate
    return [Problem(f.severity, where, f"profile: {f.message}") for f in check(cert) if f.code in _WEAKNESS_CODES]


# Folders stacks load, and what one unreadable file there does to each (see docs/store-layouts.md):
# asyncua's TrustStore parses every file whose name matches ".*(der|pem)" and lets the first parse error
# escape, so the whole trust list fails to load; node-opcua-pki catches the error per file and skips it
# with a debug log only (that file's certificate or CRL is silently not in effect).
_ASYNCUA_NAME = re.compile(".*(der|pem)")


def unreadable_problem(path: Path, error: str, layout: str, what: str = "file") -> Problem:
    """An unreadable file in a folder a stack loads: an ERROR naming the file and what it breaks."""
    breaks = []
    if _ASYNCUA_NAME.match(path.name.lower()):
        breaks.append("asyncua-based applications fail to load their whole trust list on it "
                      "(ValueError error parsing asn1 value)")
    if layout == "node-opcua":
        breaks.append("node-opcua skips it silently, so whatever it should hold is not in effect")
    elif layout == "open62541":
        breaks.append("open62541 reads it at every handshake and cannot use it")
    effect = "; ".join(breaks) or "OPC UA stacks cannot use it"
    return Problem(ERROR, str(path), f"unreadable {what}: {error}: {effect}; remove it with "
                   f"`certmgr store remove STORE {path.name}` or replace it with the real file")


def _named_issuers(store: pki.ApplicationStore, cert: x509.Certificate) -> list[x509.Certificate]:
    return [loaded.value for kind in (pki.TRUSTED, pki.ISSUER) for loaded in store.certificates(kind)
            if loaded.value is not None and loaded.value.subject == cert.issuer]


def issuer_held(store: pki.ApplicationStore, cert: x509.Certificate) -> x509.Certificate | None:
    """The CA in the store's trusted or issuer folder that signed ``cert``, or None."""
    for candidate in _named_issuers(store, cert):  # two CAs may share a name: the one that signed it
        if pki.cert_signed_by(cert, candidate):
            return candidate
    return None


def _issuer_in_store(store: pki.ApplicationStore, cert) -> object | None:
    """The CA the store holds for ``cert`` (trusted or issuer folder), so a tampered own certificate shows:
    a CA of that name that did not sign it is returned too, and the profile check then says so."""
    if cert.issuer == cert.subject:
        return cert
    return issuer_held(store, cert) or next(iter(_named_issuers(store, cert)), None)


def _inspect_own(store: pki.ApplicationStore, report: StoreReport, now: datetime) -> None:
    pairs = store.own_pairs()
    unreadable = [loaded for loaded in store.own_certificates() if loaded.value is None]
    for loaded in unreadable:
        report.problems.append(unreadable_problem(loaded.path, loaded.error, store.layout.name, "own certificate"))
    if not pairs:
        if not unreadable:
            report.problems.append(Problem(ERROR, str(store.own_certs_dir), "no own certificate: the application cannot open secure channels"))
        return
    if len(pairs) > 1:
        report.problems.append(Problem(WARNING, str(store.own_certs_dir), f"{len(pairs)} own certificates; stacks may pick either"))
    pair = store.own()
    where = str(pair.cert_path)
    info = describe(pair.certificate)
    findings = ca.check_application_certificate(pair.certificate, at=now, issuer=_issuer_in_store(store, pair.certificate))
    info["conformance"] = [str(f) for f in findings]
    report.own = info
    for finding in findings:
        if finding.code in ("expired", "not-yet-valid"):
            continue  # reported below in the operator's words
        report.problems.append(Problem(finding.severity, where, f"profile: {finding.message}"))
    report.problems += _validity_problems(pair.certificate, where, now, "own certificate")
    try:
        key = ca.load_private_key_pem(pair.key_path.read_bytes())
    except FileNotFoundError:
        report.problems.append(Problem(ERROR, str(pair.key_path), "private key is missing"))
        return
    except (OSError, ca.CAError) as exc:
        report.problems.append(Problem(ERROR, str(pair.key_path), f"private key unreadable: {exc}"))
        return
    if not ca.key_matches_certificate(key, pair.certificate.public_key()):
        report.problems.append(Problem(ERROR, str(pair.key_path), "private key does not match the own certificate"))


def _inspect_peers(store: pki.ApplicationStore, report: StoreReport, now: datetime) -> None:
    for kind, target in ((pki.TRUSTED, report.trusted), (pki.ISSUER, report.issuers)):
        for loaded in store.certificates(kind):
            where = str(loaded.path)
            if loaded.value is None:
                report.problems.append(unreadable_problem(loaded.path, loaded.error, store.layout.name))
                continue
            info = describe(loaded.value)
            info["file"] = loaded.path.name
            target.append(info)
            label = "trusted certificate" if kind == pki.TRUSTED else "issuer certificate"
            report.problems += _validity_problems(loaded.value, where, now, f"{label} {info['subject']}")
            report.problems += _weakness(loaded.value, where)


def _inspect_crls(store: pki.ApplicationStore, report: StoreReport, now: datetime) -> None:
    audit = pki.audit_crls(store)
    any_crl = any(state.valid or state.forged for state in audit.cas) or bool(audit.orphans)
    for state in audit.cas:
        status = state.status(now)
        name = state.ca_cert.subject.rfc4514_string()
        for crl_file in state.valid:
            crl = crl_file.crl
            report.crls.append({
                "file": crl_file.path.name, "part": state.kind, "issuer": name, "number": crl_file.number,
                "this_update": crl.last_update_utc.isoformat(),
                "next_update": crl.next_update_utc.isoformat() if crl.next_update_utc else None,
                "revoked": len(crl), "signature_valid": True,
            })
        where = str(store.crl_dir(state.kind))
        open62541 = store.layout.name == "open62541"
        if status == pki.MISSING and open62541 and not any_crl:
            report.problems.append(Problem(ERROR, where, f"CA {name} has no CRL and the store holds no CRL at all: open62541 "
                                           "then skips the revocation check entirely, so a revoked peer is accepted"))
        elif status == pki.MISSING:
            refused = "open62541 refuses them (RevocationUnknown, shown to the peer as BadSecurityChecksFailed)" if open62541 \
                else "peers it issued are refused with BadCertificateRevocationUnknown"
            report.problems.append(Problem(ERROR, where, f"CA {name} has no CRL: {refused}"))
        elif status == pki.STALE and open62541:
            report.problems.append(Problem(ERROR, where, f"CRL of {name} is past its nextUpdate: open62541 never checks a CRL's "
                                           "dates, so it keeps accepting every certificate revoked since; publish a fresh CRL"))
        elif status == pki.STALE:
            report.problems.append(Problem(ERROR, where, f"CRL of {name} is past its nextUpdate: peers are refused with BadCertificateRevocationUnknown"))
        elif status == pki.NOT_YET_VALID:
            report.problems.append(Problem(ERROR, where, f"CRL of {name} is not valid yet (thisUpdate in the future; check clocks)"))
        elif status == pki.MULTIPLE:
            report.problems.append(Problem(WARNING, where, f"CA {name} has {len(state.valid)} CRL files; keep exactly one"))
        else:
            newest = state.newest()
            if newest.crl.next_update_utc - now < CRL_SOON:
                report.problems.append(Problem(WARNING, where, f"CRL of {name} goes stale on {newest.crl.next_update_utc:%Y-%m-%d %H:%M} UTC"))
        for path in state.forged:
            report.crls.append({"file": path.name, "part": state.kind, "issuer": name, "signature_valid": False})
            applied = ": open62541 never checks a CRL's signature and applies it" if store.layout.name == "open62541" else ""
            report.problems.append(Problem(ERROR, str(path), f"CRL names {name} as issuer but its signature does not verify{applied}"))
    for loaded in audit.unreadable:
        report.problems.append(unreadable_problem(loaded.path, loaded.error, store.layout.name, "file in a CRL folder"))
    for path in audit.orphans:
        report.problems.append(Problem(WARNING, str(path), "CRL of a CA this store does not hold"))


def _rejected_entry(loaded) -> dict:
    if loaded.value is None:
        return {"file": loaded.path.name, "error": loaded.error}
    info = describe(loaded.value)
    info["file"] = loaded.path.name
    return info


def _first_seen(stat) -> str:
    return datetime.fromtimestamp(stat.st_mtime).astimezone().isoformat(timespec="seconds")


class RejectedCache:
    """Parsed rejected/ files keyed by (path, inode, size, mtime_ns): a long-running reader (the web console's
    inbox) parses a file once, and again only when a stack rewrites it. Each call still lists the folders and
    stats every file, so a new or removed file shows on the next call. Thread-safe enough for the console:
    entries are replaced whole and a race only costs a second parse."""

    def __init__(self) -> None:
        self._files: dict[str, tuple[tuple[int, int, int], dict]] = {}

    def entries(self, store: pki.ApplicationStore) -> list[dict]:
        out, seen = [], set()
        for path in pki.list_files(store.rejected_dir, pki.CERT_SUFFIXES):
            try:
                st = path.stat()
            except OSError:  # removed between the listing and now (approved in another tab)
                continue
            key, stamp = str(path), (st.st_ino, st.st_size, st.st_mtime_ns)
            seen.add(key)
            cached = self._files.get(key)
            if cached is None or cached[0] != stamp:
                cached = (stamp, _rejected_entry(pki.read_certificate_file(path)))
                self._files[key] = cached
            entry = dict(cached[1])
            if "error" not in entry:
                entry["first_seen"] = _first_seen(st)
            out.append(entry)
        prefix = str(store.rejected_dir) + "/"
        for key in [k for k in self._files if k.startswith(prefix) and k not in seen]:
            self._files.pop(key, None)  # files gone from this folder: the cache does not grow without bound
        return out


def rejected_entries(store: pki.ApplicationStore, cache: RejectedCache | None = None) -> list[dict]:
    """What `store rejected` lists for ``store``; with a ``cache``, unchanged files are not parsed again."""
    if cache is not None:
        return cache.entries(store)
    entries = []
    for loaded in store.rejected():
        entry = _rejected_entry(loaded)
        if "error" not in entry:
            entry["first_seen"] = _first_seen(loaded.path.stat())
        entries.append(entry)
    return entries


def _inspect_interrupted(store: pki.ApplicationStore, report: StoreReport) -> None:
    """A renewal or switch that did not finish leaves a staged pair or half an own-folder switch behind."""
    staged = sorted(p.name for p in store.staged_dir.glob("*.der")) if store.staged_dir.is_dir() else []
    for name in staged:
        report.problems.append(Problem(WARNING, str(store.staged_dir / name),
                                       "a renewal of this store has not finished (staged pair); the next `certmgr renew` "
                                       "finishes or undoes it, unless a renewal is running right now"))
    for path in store.staging_dir.glob("own-next-*") if store.staging_dir.is_dir() else []:
        report.problems.append(Problem(WARNING, str(path), "half of an interrupted own-folder switch; the next certmgr "
                                       "command on this store removes it (no stack reads it)"))


def inspect_store(store: pki.ApplicationStore, now: datetime) -> StoreReport:
    report = StoreReport(str(store.root), store.layout.name)
    _inspect_own(store, report, now)
    _inspect_interrupted(store, report)
    _inspect_peers(store, report, now)
    _inspect_crls(store, report, now)
    report.rejected = rejected_entries(store)
    for entry in report.rejected:
        if "error" in entry:
            report.problems.append(Problem(WARNING, str(store.rejected_dir / entry["file"]), f"unreadable file: {entry['error']}"))
    return report


def registered_store_list(ctx: AppContext) -> list[pki.ApplicationStore]:
    from .publishing import registered_stores

    return [t.store() for t in registered_stores(ctx) if Path(t.path).is_dir()]
