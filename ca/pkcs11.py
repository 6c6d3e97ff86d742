"""A CA key that never leaves a PKCS#11 token (an HSM, a smart card, SoftHSM2).

``TokenRSAPrivateKey`` is a ``cryptography`` RSA private key whose ``sign()`` runs CKM_SHA256_RSA_PKCS on the
token, so certmgr's certificate and CRL builders sign through it unchanged. The PIN is given by the caller
as bytes; nothing here reads the environment. Uses ``python-pkcs11`` (the ``pkcs11`` extra), imported on
first use so certmgr without a token never needs it.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from dataclasses import dataclass
from urllib.parse import unquote

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.asymmetric import rsa

from .errors import PassphraseError, TokenError
from .keys import PUBLIC_EXPONENT, check_key_size

_PATH_ATTRIBUTES = {"token", "object", "type", "id", "manufacturer", "model", "serial", "library-manufacturer",
                    "library-description", "library-version", "slot-description", "slot-manufacturer", "slot-id"}
EXAMPLE_URI = "pkcs11:token=certmgr;object=plant1-ca"


@dataclass(frozen=True)
class Pkcs11Uri:
    """The parts of an RFC 7512 PKCS#11 URI certmgr uses: the token's label and the key's label."""

    token: str
    object: str

    def __str__(self) -> str:
        from urllib.parse import quote

        return f"pkcs11:token={quote(self.token, safe='')};object={quote(self.object, safe='')}"


def is_pkcs11_uri(text: str) -> bool:
    return text.lower().startswith("pkcs11:")


def parse_pkcs11_uri(text: str) -> Pkcs11Uri:
    """Parse 'pkcs11:token=NAME;object=LABEL' (RFC 7512, percent-decoded). A PIN in the URI is refused."""
    if not is_pkcs11_uri(text):
        raise TokenError(f"{text!r} is not a PKCS#11 URI; write it as {EXAMPLE_URI}")
    path, _, query = text[len("pkcs11:"):].partition("?")
    if any(part.split("=", 1)[0].lower() == "pin-value" for part in query.split("&") if part):
        raise TokenError("the PKCS#11 URI carries pin-value; never put the PIN in the URI, give it from a file or the environment")
    values: dict[str, str] = {}
    for part in filter(None, path.split(";")):
        name, sep, value = part.partition("=")
        name = name.lower()
        if not sep or name not in _PATH_ATTRIBUTES:
            raise TokenError(f"PKCS#11 URI attribute {part!r} is not understood; write the URI as {EXAMPLE_URI}")
        if name in values:
            raise TokenError(f"PKCS#11 URI names {name} twice; give it once, as in {EXAMPLE_URI}")
        values[name] = unquote(value, errors="strict")
    if values.get("type", "private") != "private":
        raise TokenError(f"the PKCS#11 URI names type={values['type']}; the CA key is a private key (type=private)")
    missing = [name for name in ("token", "object") if not values.get(name)]
    if missing:
        raise TokenError(f"the PKCS#11 URI lacks {' and '.join(missing)}; write it as {EXAMPLE_URI}")
    return Pkcs11Uri(values["token"], values["object"])


_libraries: dict[str, object] = {}
_libraries_lock = threading.Lock()


def _library(module_path: str):
    """One loaded module per path: a PKCS#11 module is initialised once per process (C_Initialize)."""
    import pkcs11

    with _libraries_lock:
        if module_path not in _libraries:
            try:
                _libraries[module_path] = pkcs11.lib(module_path)
            except (OSError, RuntimeError, pkcs11.exceptions.PKCS11Error) as exc:
                raise TokenError(
                    f"cannot load the PKCS#11 module {module_path}: {exc}; give the path of the token's module, "
                    "e.g. /usr/lib/softhsm/libsofthsm2.so"
                ) from None
        return _libraries[module_path]


# PKCS#11 login state belongs to the process, not the session: while one session is logged in, C_Login on
# another fails with CKR_USER_ALREADY_LOGGED_IN whatever the PIN. So the PIN that logged a token in is kept
# here as a digest, and a later open must present the same PIN or is refused like a wrong PIN.
_logins: dict[tuple[str, str], bytes] = {}


def _login(token, module_path: str, label: str, pin: bytes, *, rw: bool):
    from pkcs11 import exceptions as p11

    try:
        text = pin.decode("utf-8")  # python-pkcs11 0.10.1 calls pin.encode() although its stubs allow bytes
    except UnicodeDecodeError:
        raise PassphraseError(f"the PIN for PKCS#11 token {label!r} is not UTF-8 text; give the PIN as text") from None
    wrong = PassphraseError(f"wrong PIN for PKCS#11 token {label!r}: login refused")
    digest = hashlib.sha256(pin).digest()
    with _libraries_lock:
        try:
            session = token.open(rw=rw, user_pin=text)
        except (p11.PinIncorrect, p11.PinLenRange, p11.PinInvalid):
            raise wrong from None
        except p11.PinLocked:
            raise PassphraseError(f"the PIN of PKCS#11 token {label!r} is locked; unlock it with the SO PIN") from None
        except p11.UserAlreadyLoggedIn:
            known = _logins.get((module_path, label))
            if known is None or not hmac.compare_digest(known, digest):
                raise wrong from None
            return token.open(rw=rw)  # shares the login of the open session
        _logins[(module_path, label)] = digest
        return session


class TokenRSAPrivateKey(rsa.RSAPrivateKey):
    """An RSA private key on a token, usable wherever cryptography wants an ``RSAPrivateKey`` to sign."""

    def __init__(self, session, private_object, public_key: rsa.RSAPublicKey, uri: Pkcs11Uri) -> None:
        self._session = session
        self._private = private_object
        self._public = public_key
        self.uri = uri
        self._lock = threading.Lock()  # a PKCS#11 session runs one operation at a time

    def sign(self, data: bytes, padding: asym_padding.AsymmetricPadding, algorithm) -> bytes:
        from pkcs11 import Mechanism

        if not isinstance(padding, asym_padding.PKCS1v15) or not isinstance(algorithm, hashes.SHA256):
            raise TokenError(
                f"the token key signs with PKCS#1 v1.5 and SHA-256 only (certmgr's profile), not "
                f"{type(padding).__name__} with {getattr(algorithm, 'name', algorithm)}"
            )
        from pkcs11.exceptions import PKCS11Error

        with self._lock:
            try:
                return bytes(self._private.sign(data, mechanism=Mechanism.SHA256_RSA_PKCS))
            except PKCS11Error as exc:  # token removed, session closed by the HSM, ...: one line, not a traceback
                raise TokenError(f"the token refused to sign with {self.uri}: {type(exc).__name__}; "
                                 "check that the token is present, then run the command again") from None

    def public_key(self) -> rsa.RSAPublicKey:
        return self._public

    @property
    def key_size(self) -> int:
        return self._public.key_size

    def decrypt(self, ciphertext: bytes, padding: asym_padding.AsymmetricPadding) -> bytes:
        raise TokenError("the CA key on the token only signs; it does not decrypt")

    def private_numbers(self) -> rsa.RSAPrivateNumbers:
        raise TokenError(f"the CA key {self.uri} never leaves its token; its private numbers cannot be read")

    def private_bytes(self, encoding, format, encryption_algorithm) -> bytes:
        raise TokenError(f"the CA key {self.uri} never leaves its token; it cannot be exported")

    def __copy__(self) -> TokenRSAPrivateKey:
        return self

    def __deepcopy__(self, memo: dict) -> TokenRSAPrivateKey:
        return self

    def close(self) -> None:
        with self._lock:
            self._session.close()

    def __enter__(self) -> TokenRSAPrivateKey:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()



def _public_key_of(session, private_object, label: str) -> rsa.RSAPublicKey:
    from pkcs11 import Attribute, KeyType, ObjectClass
    from pkcs11.exceptions import PKCS11Error

    try:
        source = private_object
        modulus, exponent = source[Attribute.MODULUS], source[Attribute.PUBLIC_EXPONENT]
    except (PKCS11Error, KeyError):  # CKA_PUBLIC_EXPONENT is optional on private key objects
        source = session.get_key(ObjectClass.PUBLIC_KEY, KeyType.RSA, label=label)
        modulus, exponent = source[Attribute.MODULUS], source[Attribute.PUBLIC_EXPONENT]
    return rsa.RSAPublicNumbers(int.from_bytes(exponent, "big"), int.from_bytes(modulus, "big")).public_key()


def open_token_key(module_path: str, uri: str | Pkcs11Uri, pin: bytes, *, generate_bits: int | None = None) -> TokenRSAPrivateKey:
    """The RSA key labelled ``uri.object`` on the token labelled ``uri.token``, logged in with ``pin``.

    With ``generate_bits`` a key pair is generated on the token (sensitive, never extractable) when no key
    has that label; without it a missing key is an error. A wrong PIN raises ``PassphraseError``.
    """
    from pkcs11 import Attribute, KeyType, ObjectClass
    from pkcs11 import exceptions as p11

    parsed = uri if isinstance(uri, Pkcs11Uri) else parse_pkcs11_uri(uri)
    if not pin:
        raise PassphraseError(f"the PIN for PKCS#11 token {parsed.token!r} is empty; give the token's user PIN")
    if generate_bits is not None:
        check_key_size(generate_bits)
    library = _library(module_path)
    try:
        token = library.get_token(token_label=parsed.token)
    except p11.NoSuchToken:
        raise TokenError(f"no PKCS#11 token labelled {parsed.token!r} in {module_path}; check the URI's token=") from None
    except p11.MultipleTokensReturned:
        raise TokenError(f"more than one PKCS#11 token is labelled {parsed.token!r}; give tokens distinct labels") from None
    session = _login(token, module_path, parsed.token, pin, rw=generate_bits is not None)
    try:
        try:
            private = session.get_key(ObjectClass.PRIVATE_KEY, KeyType.RSA, label=parsed.object)
        except p11.NoSuchKey:
            if generate_bits is None:
                raise TokenError(
                    f"token {parsed.token!r} holds no RSA private key labelled {parsed.object!r}; check the URI's object="
                ) from None
            _public, private = session.generate_keypair(
                KeyType.RSA, generate_bits, label=parsed.object, id=parsed.object.encode("utf-8"), store=True,
                public_template={Attribute.PUBLIC_EXPONENT: PUBLIC_EXPONENT.to_bytes(3, "big")},
                private_template={Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False},
            )
        except p11.MultipleObjectsReturned:
            raise TokenError(f"token {parsed.token!r} holds several keys labelled {parsed.object!r}; label the CA key uniquely") from None
        public_key = _public_key_of(session, private, parsed.object)
    except BaseException:
        session.close()
        raise
    return TokenRSAPrivateKey(session, private, public_key, parsed)
