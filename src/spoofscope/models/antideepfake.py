"""AntiDeepfake: self-supervised encoders post-trained for deepfake detection.

Paper: W. Ge, X. Wang, X. Liu and J. Yamagishi, "Post-training for deepfake speech detection"
(2025). Original code: github.com/nii-yamagishilab/AntiDeepfake (BSD-3-Clause, National
Institute of Informatics); checkpoints on Hugging Face (``nii-yamagishilab/<name>-anti-deepfake``,
``-nda`` without RawBoost) and Zenodo under **CC BY-NC-SA 4.0: research and non-commercial use
only**. The encoders saw 56k hours of genuine and 18k hours of artefact speech in 100+ languages.

The architecture, as the authors' ``models/W2V.py`` and ``models/HBT.py`` (fairseq
configurations ``W2V_configs.py``, ``HBT_configs.py``) define it, built offline in
``transformers``: the waveform is normalised to zero mean and unit variance (the authors'
``layer_norm(wav, wav.shape)`` in ``dataio.py``; here per window), the encoder's last output
(``features_only``: after the final LayerNorm for the pre-LN encoders) is averaged over frames
and one Linear ``proj_fc`` gives two logits, index 1 = real (the authors' label 1 = "real").

* ``w2v-small``: wav2vec 2.0 base: group-norm convolutional feature extractor without conv
  biases, post-LN transformer (12 x 768);
* ``w2v-large``, ``mms-300m``: layer-norm extractor with biases, pre-LN (24 x 1024);
* ``mms-1b``, ``xls-r-1b``: as large, 48 x 1280; ``xls-r-2b``: 48 x 1920;
* ``hubert-xl``: HuBERT extra large, layer-norm extractor without conv biases, pre-LN, 48 x 1280.

Because the score is a Linear over the mean of frames, the same Linear applied to each frame
(the authors' ``forward_seg``) gives a score every 20 ms (:meth:`AntiDeepfake.frame_logits`);
their mean is the window's logits.

Checkpoints come in the authors' layout (``m_ssl.model.*`` fairseq encoder keys + ``proj_fc.*``,
in ``model.safetensors`` on the Hub or a Zenodo ``.ckpt``, with or without a wrapper prefix);
:func:`convert_antideepfake` maps them onto ours and names what it cannot place.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn

from ._card import ModelCard, PretrainedWeights
from ._registry import merged_config, register_model
from .ssl import FAIRSEQ_DROPPED, FAIRSEQ_KEY_MAP, SSLFrontend, _SSLBase

_COMMON = {
    "hidden_act": "gelu",
    "feat_extract_activation": "gelu",
    "conv_dim": [512] * 7,
    "conv_kernel": [10, 3, 3, 3, 3, 2, 2],
    "conv_stride": [5, 2, 2, 2, 2, 2, 2],
    "num_conv_pos_embeddings": 128,
    "num_conv_pos_embedding_groups": 16,
    "layer_norm_eps": 1e-5,
    "apply_spec_augment": False,
}


def _pre_ln(hidden: int, layers: int, ffn: int, model_type="wav2vec2", conv_bias=True) -> dict:
    """A pre-LN encoder with a layer-norm feature extractor (fairseq ``layer_norm_first``,
    ``extractor_mode: layer_norm``)."""
    cfg = dict(
        _COMMON,
        model_type=model_type,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=16,
        intermediate_size=ffn,
        feat_extract_norm="layer",
        conv_bias=conv_bias,
        do_stable_layer_norm=True,
    )
    if model_type == "hubert":
        cfg["feat_proj_layer_norm"] = True  # fairseq's layer_norm over the CNN features
    return cfg


#: the authors' architectures (fairseq configurations) as ``transformers`` configs
ARCHITECTURES = {
    # wav2vec 2.0 base: fairseq defaults, extractor_mode "default" (group norm on the first
    # convolution only), conv_bias False, layer_norm_first False (post-LN), 12 heads
    "w2v-small": dict(
        _COMMON,
        model_type="wav2vec2",
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        feat_extract_norm="group",
        conv_bias=False,
        do_stable_layer_norm=False,
    ),
    "w2v-large": _pre_ln(1024, 24, 4096),
    "mms-300m": _pre_ln(1024, 24, 4096),
    "mms-1b": _pre_ln(1280, 48, 5120),
    "xls-r-1b": _pre_ln(1280, 48, 5120),
    "xls-r-2b": _pre_ln(1920, 48, 7680),
    "hubert-xl": _pre_ln(1280, 48, 5120, model_type="hubert", conv_bias=False),
}

#: parameters of the authors' model (fairseq, pre-training heads included) that a detector
#: does not use and we drop: the quantiser, ``project_q`` and ``final_proj`` of wav2vec 2.0
#: (``latent_vars`` 320 x ``latent_groups`` 2 codewords of ``final_dim`` / 2), HuBERT's
#: ``label_embs_concat`` (504 x ``final_dim``) and ``final_proj``. Their sizes follow the
#: configurations; ``test_antideepfake`` computes them and checks the published totals.
FINAL_DIM = {
    "w2v-small": 256,
    "w2v-large": 768,
    "mms-300m": 768,
    "mms-1b": 1024,
    "xls-r-1b": 1024,
    "xls-r-2b": 1024,
    "hubert-xl": 1024,
}


@dataclass
class AntiDeepfakeConfig:
    """``encoder_config`` None builds the variant's full architecture (random weights until a
    checkpoint is loaded); tests pass a tiny one. ``freeze`` as in
    :class:`~spoofscope.models.ssl.SSLFrontend`. ``normalize``: the authors' waveform
    normalisation (zero mean, unit variance per input)."""

    encoder_config: dict | None = None
    freeze: object = "none"
    normalize: bool = True


class AntiDeepfake(_SSLBase):
    """(B, L) waveform -> (logits (B, 2), pooled encoder output (B, H)); index 1 = real."""

    #: encoder samples per frame (the CNN's total stride)
    frame_hop = 320

    def __init__(self, variant: str, config: AntiDeepfakeConfig | None = None, **overrides):
        super().__init__()
        cfg = merged_config(AntiDeepfakeConfig, config, overrides)
        self.config, self.variant = cfg, variant
        enc = cfg.encoder_config if cfg.encoder_config is not None else ARCHITECTURES[variant]
        self.ssl_model = SSLFrontend(None, enc, "last", cfg.freeze)
        self.proj_fc = nn.Linear(self.ssl_model.hidden_size, 2)
        self.embedding_dim = self.ssl_model.hidden_size

    def _frames(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        if self.config.normalize:  # layer_norm(x, x.shape) without a shape (dynamic export)
            m = x.mean(dim=-1, keepdim=True)
            x = (x - m) / torch.sqrt(x.var(dim=-1, keepdim=True, unbiased=False) + 1e-5)
        return self.ssl_model(x)

    def forward(self, x: torch.Tensor):
        pooled = self._frames(x).mean(dim=1)
        return self.proj_fc(pooled), pooled

    def frame_logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L) -> (B, T, 2): ``proj_fc`` on each encoder frame (one every 20 ms at 16 kHz,
        frame t covering samples [320 t, 320 t + 400)); their mean over T is ``forward``'s
        logits."""
        return self.proj_fc(self._frames(x))


# ---- the authors' checkpoint layout ------------------------------------------------------------
def convert_antideepfake(state_dict: dict) -> dict:
    """The authors' layout mapped onto ours.

    Accepts ``m_ssl.model.<fairseq key>`` + ``proj_fc.*`` (Hugging Face ``model.safetensors``,
    Zenodo ``.ckpt``), with any wrapper prefix before ``m_ssl.``/``proj_fc.`` (``module.``,
    ``model.``), and ``m_ssl.model.<transformers key>`` (a third-party conversion). The
    pre-training heads are dropped; keys already in our layout pass through. A key that fits
    none of these is kept as it is, so that loading names it as unexpected.
    """
    out = {}
    for k, v in state_dict.items():
        m = re.search(r"(?:^|\.)(m_ssl\.model\.|proj_fc\.)", k)
        if m is None:
            out[k] = v
            continue
        rest = k[m.start(1) :]
        if rest.startswith("proj_fc."):
            out[rest] = v
            continue
        fs = "ssl_model.model." + rest[len("m_ssl.model.") :]
        if FAIRSEQ_DROPPED.match(fs):
            continue
        for pat, rep in FAIRSEQ_KEY_MAP:
            if re.fullmatch(pat, fs):
                out[re.sub(pat, rep, fs)] = v
                break
        else:  # a transformers name under m_ssl.model. (or an unknown key: named at load time)
            out["ssl_model.encoder." + rest[len("m_ssl.model.") :]] = v
    return out


# ---- the published checkpoints -----------------------------------------------------------------
_HF = "https://huggingface.co/nii-yamagishilab/"
_LICENCE = "CC BY-NC-SA 4.0 (checkpoints; research and non-commercial use only), code BSD-3"
_NOTICE = (
    "AntiDeepfake model weights (c) 2025 National Institute of Informatics (NII), Japan, "
    "Yamagishi Lab; licensed under Creative Commons Attribution-NonCommercial-ShareAlike 4.0 "
    "International (CC BY-NC-SA 4.0): research and non-commercial use only, with attribution, "
    "derivatives under the same licence. https://creativecommons.org/licenses/by-nc-sa/4.0/ ; "
    "source: github.com/nii-yamagishilab/AntiDeepfake"
)
_TRAINED = (
    "the authors' post-training set: about 56k hours of genuine and 18k hours of artefact "
    "(TTS, VC, vocoded, codec) speech in 100+ languages, over 30 corpora (ASVspoof 2019/2021/5, "
    "MLAAD, SpoofCeleb, CodecFake, LibriTTS, MLS, VoxCeleb2 ... ; see the paper)"
)
_MISSES = (
    "authors' Deepfake-Eval-2024 EER 25.8-47.7 % across the family: real-world deepfakes from "
    "social media remain hard; scores come from an uncalibrated softmax until you fit a "
    "calibration on your own data (spoofscope calibrate)"
)

#: variant -> (Hugging Face name, parameters as published, description, {tag: (ITW EER, DE24
#: EER, ADD2023 EER)} from the authors' README table, EER %)
_PUBLISHED = {
    "w2v-small": ("wav2vec-small", "95M", "wav2vec 2.0 base",
                  {"da": (4.24, 33.33, 13.02), "nda": (4.65, 31.97, 19.41)}),
    "w2v-large": ("wav2vec-large", "317M", "wav2vec 2.0 large (LV-60 + CV + SWBD + FSH)",
                  {"da": (1.91, 33.38, 13.25), "nda": (2.25, 30.05, 12.67)}),
    "mms-300m": ("mms-300m", "317M", "MMS 300M",
                 {"da": (2.90, 32.80, 7.93), "nda": (2.00, 31.38, 11.22)}),
    "mms-1b": ("mms-1b", "965M", "MMS 1B",
               {"da": (1.82, 27.70, 9.06), "nda": (1.86, 27.55, 9.46)}),
    "xls-r-1b": ("xls-r-1b", "965M", "XLS-R 1B",
                 {"da": (1.35, 26.76, 5.39), "nda": (1.36, 26.17, 6.58)}),
    "xls-r-2b": ("xls-r-2b", "2.2B", "XLS-R 2B",
                 {"da": (1.23, 27.77, 4.67), "nda": (1.31, 25.78, 6.84)}),
    "hubert-xl": ("hubert-xlarge", "964M", "HuBERT extra large (Libri-Light 60k h)",
                  {"da": (5.23, 34.08, 18.90), "nda": (17.99, 47.72, 35.34)}),
}  # fmt: skip


def _weights(hf_name: str, tag: str, results: tuple) -> PretrainedWeights:
    repo = f"nii-yamagishilab/{hf_name}-anti-deepfake" + ("-nda" if tag == "nda" else "")
    itw, de24, add = results
    aug = "with RawBoost" if tag == "da" else "without RawBoost"
    return PretrainedWeights(
        url=f"https://huggingface.co/{repo}",
        filename="model.safetensors",
        sha256=None,
        licence=_LICENCE,
        notice=_NOTICE,
        trained_on=f"{_TRAINED}; {aug}",
        published=f"authors: In-the-Wild EER {itw:.2f} %, Deepfake-Eval-2024 {de24:.2f} %, "
        f"ADD2023 {add:.2f} %",
        source="hf",
        hf_repo=repo,
    )


def _register(variant: str) -> None:
    hf_name, params, desc, results = _PUBLISHED[variant]
    name = f"antideepfake-{variant}"

    @register_model(
        ModelCard(
            name=name,
            family="antideepfake",
            description=f"{desc} post-trained for deepfake detection ({params} parameters; "
            "Ge et al., 2025), non-commercial weights",
            window_samples=64000,
            window_policy="the authors score whole files (post-training crops 10-13 s); here "
            "4-s windows (--window-samples for longer ones)",
            export="dynamic",
            weights={t: _weights(hf_name, t, r) for t, r in results.items()},
            training_data=_TRAINED,
            published_results="authors (README of nii-yamagishilab/AntiDeepfake), EER %: "
            + "; ".join(
                f"{t}: In-the-Wild {r[0]:.2f}, Deepfake-Eval-2024 {r[1]:.2f}"
                for t, r in results.items()
            ),
            licence=_LICENCE,
            encoder=f"{desc}, last layer (fine-tuned end to end)",
            notes=f"trained on: {_TRAINED}. Known to miss: {_MISSES}",
            localisation="frame",
        ),
        convert=convert_antideepfake,
    )
    def factory(**overrides) -> AntiDeepfake:
        return AntiDeepfake(variant, None, **overrides)

    factory.__doc__ = f"AntiDeepfake {desc} ({params} parameters as published)."


for _v in ARCHITECTURES:
    _register(_v)
