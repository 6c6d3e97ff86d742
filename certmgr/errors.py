"""One exception root for certmgr. At the CLI edge an expected error prints one line and an exit code.

Exit codes (ARCHITECTURE.md): 0 success, 1 the operation failed, 2 usage or input error.
"""

from __future__ import annotations


class CertmgrError(Exception):
    """An expected failure: the message names the problem, ``hint`` the fix."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        return f"{self.message}; {self.hint}" if self.hint else self.message


class InputError(CertmgrError):
    """Bad input or usage: exit code 2."""

    exit_code = 2


class OperationFailed(CertmgrError):
    """The operation was tried and failed (I/O, verification, renewal, CRL): exit code 1."""

    exit_code = 1


class NotInitialised(InputError):
    pass
