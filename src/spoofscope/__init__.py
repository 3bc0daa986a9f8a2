"""spoofscope: spoofing countermeasures for speech, with the official ASVspoof metrics."""

__version__ = "0.1.0"
