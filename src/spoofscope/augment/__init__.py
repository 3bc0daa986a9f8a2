"""Data augmentation: RawBoost, noise, reverberation, speed/tempo, telephony and codecs."""

from ._base import Compose, Transform, build_augmentation, list_transforms
from .codecs import ALaw, BandLimit, Codec, MuLaw, a_law, codec_roundtrip, mu_law
from .noise import AddNoise, Clip, Gain, Reverb, coloured_noise, mix_at_snr
from .rawboost import RawBoost
from .speed import Speed, Tempo, change_speed, wsola

__all__ = [
    "ALaw",
    "AddNoise",
    "BandLimit",
    "Clip",
    "Codec",
    "Compose",
    "Gain",
    "MuLaw",
    "RawBoost",
    "Reverb",
    "Speed",
    "Tempo",
    "Transform",
    "a_law",
    "build_augmentation",
    "change_speed",
    "codec_roundtrip",
    "coloured_noise",
    "list_transforms",
    "mix_at_snr",
    "mu_law",
    "wsola",
]
