"""Errors raised by the certificate authority package.

All derive from ``ValueError`` so callers outside certmgr can treat them as bad input;
certmgr maps them to exit code 2 at the CLI edge.
"""


class CAError(ValueError):
    """Root of every error raised by ``ca``; the message names the problem and the fix."""


class ProfileError(CAError):
    """An input cannot be turned into a certificate that satisfies the OPC UA profile."""


class PassphraseError(CAError):
    """The CA private key could not be decrypted with the given passphrase."""


class TokenError(CAError):
    """A PKCS#11 token or key cannot be used: module, token or key missing, or an unsupported operation."""
