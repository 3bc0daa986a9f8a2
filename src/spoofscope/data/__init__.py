"""Protocols, lazy datasets and downloads of the corpora spoofscope reads.

Names are imported on first use (see :mod:`spoofscope._lazy`)."""

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:  # pragma: no cover
    from .datasets import (
        ASVspoof5,
        ASVspoof2019LA,
        ASVspoof2021,
        AudioDataset,
        CsvDataset,
        FolderDataset,
        InTheWild,
        MissingAudioError,
        asvspoof2019_asv_scores_path,
        asvspoof2019_paths,
    )
    from .download import (
        ASVSPOOF2019_LA_URL,
        DownloadError,
        download_asvspoof2019_la,
        download_file,
    )
    from .formats import (
        FORMATS,
        DatasetFormat,
        DatasetNotFound,
        Splits,
        check_dataset,
        detect_format,
        format_check,
        open_dataset,
        open_splits,
    )
    from .protocols import (
        BONAFIDE,
        SPOOF,
        ProtocolError,
        Trial,
        parse_asvspoof5,
        parse_asvspoof2019,
        parse_asvspoof2021,
        parse_csv,
        parse_in_the_wild,
        read_asv_scores,
        read_protocol,
    )

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        ".datasets": [
            "ASVspoof5",
            "ASVspoof2019LA",
            "ASVspoof2021",
            "AudioDataset",
            "CsvDataset",
            "FolderDataset",
            "InTheWild",
            "MissingAudioError",
            "asvspoof2019_asv_scores_path",
            "asvspoof2019_paths",
        ],
        ".download": [
            "ASVSPOOF2019_LA_URL",
            "DownloadError",
            "download_asvspoof2019_la",
            "download_file",
        ],
        ".formats": [
            "FORMATS",
            "DatasetFormat",
            "DatasetNotFound",
            "Splits",
            "check_dataset",
            "detect_format",
            "format_check",
            "open_dataset",
            "open_splits",
        ],
        ".protocols": [
            "BONAFIDE",
            "SPOOF",
            "ProtocolError",
            "Trial",
            "parse_asvspoof5",
            "parse_asvspoof2019",
            "parse_asvspoof2021",
            "parse_csv",
            "parse_in_the_wild",
            "read_asv_scores",
            "read_protocol",
        ],
    },
)

__all__ = [
    "ASVSPOOF2019_LA_URL",
    "ASVspoof2019LA",
    "ASVspoof2021",
    "ASVspoof5",
    "AudioDataset",
    "BONAFIDE",
    "CsvDataset",
    "DatasetFormat",
    "DatasetNotFound",
    "FORMATS",
    "DownloadError",
    "FolderDataset",
    "InTheWild",
    "MissingAudioError",
    "ProtocolError",
    "SPOOF",
    "Splits",
    "Trial",
    "asvspoof2019_asv_scores_path",
    "asvspoof2019_paths",
    "check_dataset",
    "download_asvspoof2019_la",
    "detect_format",
    "download_file",
    "format_check",
    "open_dataset",
    "open_splits",
    "parse_asvspoof2019",
    "parse_asvspoof2021",
    "parse_asvspoof5",
    "parse_csv",
    "parse_in_the_wild",
    "read_asv_scores",
    "read_protocol",
]
