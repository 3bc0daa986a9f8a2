"""Hand-crafted features: pure functions plus thin modules."""

from .cqcc import CQCC, cq_log_power, cqcc
from .lfcc import LFCC, dct_matrix, delta_edge, lfcc, lfcc_filterbank

__all__ = [
    "CQCC",
    "LFCC",
    "cq_log_power",
    "cqcc",
    "dct_matrix",
    "delta_edge",
    "lfcc",
    "lfcc_filterbank",
]
