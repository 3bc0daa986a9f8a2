"""The errors spoofscope raises for bad input, in one hierarchy.

Every error a user can cause (a file, a protocol, a recipe, an option, weights) derives from
:class:`SpoofscopeError`; its message names the thing and the fix. The CLI prints these as one
line with exit status 2; any other exception is a bug and keeps its traceback. Each subclass
also derives from the built-in exception it used to be, so ``except ValueError`` still works.
"""

from __future__ import annotations


class SpoofscopeError(Exception):
    """Base class of every user-facing spoofscope error."""


class ConfigError(SpoofscopeError, ValueError):
    """A recipe key, model name, option or value that is not valid; lists the valid choices."""


class WeightsError(SpoofscopeError, RuntimeError):
    """Weights or checkpoints that are missing, unreachable, corrupt, fail their checksum or do
    not fit the architecture."""


def choices_error(what: str, value, valid) -> ConfigError:
    """``ConfigError`` for ``value`` not among ``valid``, listing them."""
    return ConfigError(f"{what}: {value!r} is not one of {', '.join(map(str, valid))}")


class InputError(SpoofscopeError, ValueError):
    """An input array or batch of the wrong shape or length for the model."""
