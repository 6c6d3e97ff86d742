"""Errors raised by the certificate store package."""


class StoreError(Exception):
    """A store cannot be read or written as asked; the message names the folder and the fix."""


class UnsafeNameError(StoreError, ValueError):
    """A certificate name would produce a file name outside its folder or one stacks cannot read."""
