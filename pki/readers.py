"""Reading certificates, keys and CRLs from store folders without ever crashing on a bad file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from cryptography import x509

CERT_SUFFIXES = (".der", ".pem", ".cer", ".crt")
CRL_SUFFIXES = (".crl", ".der", ".pem")
T = TypeVar("T")


@dataclass(frozen=True)
class Loaded(Generic[T]):
    """One file of a folder: the parsed object, or the reason it could not be read."""

    path: Path
    value: T | None
    error: str | None = None


def parse_certificate(data: bytes) -> x509.Certificate:
    if data.lstrip().startswith(b"-----BEGIN"):
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


def parse_crl(data: bytes) -> x509.CertificateRevocationList:
    if data.lstrip().startswith(b"-----BEGIN"):
        return x509.load_pem_x509_crl(data)
    return x509.load_der_x509_crl(data)


def _files(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    try:
        entries = sorted(folder.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    # Compare the real suffix: a pattern such as ".*(der|pem)" would also take "border.txt".
    return [p for p in entries if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in suffixes]


def _read(path: Path, parser, what: str) -> Loaded:
    try:
        return Loaded(path, parser(path.read_bytes()))
    except OSError as exc:
        return Loaded(path, None, f"cannot read: {exc.strerror or exc}")
    except ValueError as exc:
        return Loaded(path, None, f"not {what}: {str(exc).splitlines()[0][:120]}")


def read_certificate_file(path: Path) -> Loaded[x509.Certificate]:
    return _read(path, parse_certificate, "a certificate")


def read_crl_file(path: Path) -> Loaded[x509.CertificateRevocationList]:
    return _read(path, parse_crl, "a CRL")


def read_certificates(folder: Path) -> list[Loaded[x509.Certificate]]:
    return [read_certificate_file(p) for p in _files(folder, CERT_SUFFIXES)]


def read_crls(folder: Path) -> list[Loaded[x509.CertificateRevocationList]]:
    return [read_crl_file(p) for p in _files(folder, CRL_SUFFIXES)]


def list_files(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    return _files(folder, suffixes)
