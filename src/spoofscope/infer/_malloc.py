"""Keep freed memory in the process (glibc only).

AASIST's first encoder stage allocates hundreds of MB per batch. With glibc's defaults each of
those blocks is mmap'ed, returned to the OS when freed and faulted back in, page by page, on
the next batch: on a 2-core VM that kernel work took more time than the arithmetic (sys 57 s
against user 40 s for 48 windows of the official computation). Serving large blocks from the
heap and never trimming it makes later batches reuse earlier ones' pages: the heap may grow
once more after the first batch (when a small object lands after a freed block) and then
stops growing; the process keeps its peak, which a detector reaches on its first batches
anyway.

Set ``SPOOFSCOPE_KEEP_MEMORY=0`` to keep glibc's defaults (or set ``MALLOC_*`` yourself: an
explicit ``MALLOC_MMAP_MAX_``, ``MALLOC_MMAP_THRESHOLD_`` or ``MALLOC_TRIM_THRESHOLD_`` wins).
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_state: bool | None = None


def keep_freed_memory() -> bool:
    """Serve large blocks from the heap and never trim it (once per process). Returns whether
    the settings are in force (False off glibc, or when opted out)."""
    global _state
    if _state is not None:
        return _state
    _state = False
    if os.environ.get("SPOOFSCOPE_KEEP_MEMORY", "1") == "0":
        return False
    if any(
        k in os.environ
        for k in ("MALLOC_MMAP_MAX_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
    ):
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        # mallopt's value is an int: -1 becomes SIZE_MAX for the trim threshold (never trim);
        # the largest positive int (2 GB) is smaller than one batch's peak
        ok = libc.mallopt(_M_MMAP_MAX, 0) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, -1) == 1
    except (OSError, AttributeError):
        ok = False
    log.debug("keep freed memory in the process: %s", ok)
    _state = ok
    return ok
