"""Self-supervised front-ends (wav2vec 2.0, XLS-R, WavLM, HuBERT) with an AASIST back-end.

Paper: H. Tak et al., "Automatic speaker verification spoofing and deepfake detection using
wav2vec 2.0 and data augmentation", Odyssey 2022 (SSL-AASIST). Reference code:
github.com/TakHemlata/SSL_Anti-spoofing (a fairseq XLS-R front-end). Here the front-end is any
wav2vec 2.0-family encoder of Hugging Face ``transformers``, chosen by a local path or a hub id
(``encoder=``), or built from a config (``encoder_config=``, e.g. a tiny random encoder for tests).

* ``layers``: ``"last"`` (the encoder output, as the reference), an int (one hidden layer), or
  ``"weighted"`` (a learned softmax-weighted sum of all hidden layers);
* ``freeze``: ``"none"`` (fine-tune everything), ``"all"``, ``"feature_extractor"`` (the CNN),
  or an int k (the CNN and the first k transformer layers);
* ``optimizer_groups(lr, frontend_lr)`` gives the front-end its own learning rate.

``ssl-aasist`` keeps the reference back-end's parameter names (``LL``, ``first_bn``,
``first_bn1``, ``encoder``, ``attention``, ``pos_S``, graph layers) so that a converted
checkpoint (:func:`convert_fairseq_ssl_aasist`) loads strictly. ``ssl-linear`` is a light
back-end: a projection, statistics pooling and a linear classifier.

``create_model("ssl-aasist")`` without ``encoder``/``encoder_config`` builds the XLS-R 300M
architecture (:data:`XLSR_300M`) with random weights, to be filled by a converted checkpoint
(``load_model("ssl-aasist", weights=...)``); ``encoder=`` a local directory or hub id loads a
``transformers`` model; ``encoder_config=TINY_ENCODER`` gives the small encoder of the tests.

The published XLS-R detectors (XLSR-SLS, XLSR-Mamba, Nes2Net-X, TCM) build on
:class:`XLSRDetector` below, one family file each.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ConfigError, WeightsError
from ._card import ModelCard, PretrainedWeights
from ._registry import check_waveform, merged_config, register_model
from .aasist import Residual_block, build_graph_layers, graph_head

TINY_ENCODER = {
    "model_type": "wav2vec2",
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "conv_dim": [16] * 7,
    "conv_kernel": [10, 3, 3, 3, 3, 2, 2],
    "conv_stride": [5, 2, 2, 2, 2, 2, 2],
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 2,
    "do_stable_layer_norm": True,
    "feat_extract_norm": "layer",
}


#: wav2vec 2.0 XLS-R 300M (fairseq ``xlsr2_300m.pt``, Babu et al. 2021) as a ``transformers``
#: config: 24 pre-LayerNorm transformer layers of width 1024, 16 heads, FFN 4096, a 7-layer CNN
#: with layer norm and biases (hop 320 samples, receptive field 400). Built offline; the weights
#: come from a converted checkpoint.
XLSR_300M = {
    "model_type": "wav2vec2",
    "hidden_size": 1024,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "intermediate_size": 4096,
    "hidden_act": "gelu",
    "conv_dim": [512] * 7,
    "conv_kernel": [10, 3, 3, 3, 3, 2, 2],
    "conv_stride": [5, 2, 2, 2, 2, 2, 2],
    "conv_bias": True,
    "feat_extract_norm": "layer",
    "feat_extract_activation": "gelu",
    "num_conv_pos_embeddings": 128,
    "num_conv_pos_embedding_groups": 16,
    "do_stable_layer_norm": True,
    "layer_norm_eps": 1e-5,
    "apply_spec_augment": False,
}


def build_encoder(encoder: str | None, encoder_config: dict | None) -> nn.Module:
    """A ``transformers`` wav2vec 2.0 / WavLM / HuBERT model, from a path or hub id (weights),
    or from a config dict (random initialisation)."""
    try:
        import transformers
    except ImportError as e:  # named by module, so the command line names the extra too
        raise ModuleNotFoundError(
            "SSL models need transformers: pip install 'spoofscope[ssl]'", name="transformers"
        ) from e
    if encoder:
        return transformers.AutoModel.from_pretrained(encoder)
    cfg = dict(encoder_config or XLSR_300M)
    kind = cfg.pop("model_type", "wav2vec2")
    classes = {
        "wav2vec2": (transformers.Wav2Vec2Config, transformers.Wav2Vec2Model),
        "wavlm": (transformers.WavLMConfig, transformers.WavLMModel),
        "hubert": (transformers.HubertConfig, transformers.HubertModel),
    }
    if kind not in classes:
        raise ConfigError(f"encoder model_type must be one of {sorted(classes)}, not {kind!r}")
    conf_cls, model_cls = classes[kind]
    return model_cls(conf_cls(**cfg))


class SSLFrontend(nn.Module):
    """Waveform (B, L) -> frames (B, T, H) from a chosen layer (or a weighted sum), or, with
    ``layers="all"``, every transformer layer's output before the encoder's final LayerNorm,
    (B, n_layers, T, H): what fairseq's ``layer_results`` hold (XLSR-SLS reads them).
    ``transformers`` returns ``hidden_states[k]`` = output of layer k for k < n_layers, but the
    last entry after the final LayerNorm: the last layer's own output is taken by a hook.
    """

    def __init__(
        self, encoder: str | None, encoder_config: dict | None, layers="last", freeze="none"
    ):
        super().__init__()
        self.encoder = build_encoder(encoder, encoder_config)
        conf = self.encoder.config
        self.hidden_size = conf.hidden_size
        self.n_layers = conf.num_hidden_layers
        self.layers = layers
        if layers == "weighted":
            self.layer_weights = nn.Parameter(torch.zeros(self.n_layers + 1))
        elif layers not in ("last", "all") and not (
            isinstance(layers, int) and 0 <= layers <= self.n_layers
        ):
            raise ConfigError(f"layers must be 'last', 'all', 'weighted' or 0..{self.n_layers}")
        self.freeze = freeze
        self._apply_freeze()
        # receptive field and hop of the CNN, for the minimum input length
        self.conv_kernel = list(conf.conv_kernel)
        self.conv_stride = list(conf.conv_stride)
        self.encoder.config.apply_spec_augment = False  # masking is an augmentation choice
        if layers == "all":  # every layer's output is read: none may be skipped (LayerDrop)
            self.encoder.config.layerdrop = 0.0

    def _apply_freeze(self):
        enc, f = self.encoder, self.freeze
        if f == "none":
            return
        if f == "all":
            for p in enc.parameters():
                p.requires_grad_(False)
            return
        for p in enc.feature_extractor.parameters():
            p.requires_grad_(False)
        if isinstance(f, int):
            for p in enc.feature_projection.parameters():
                p.requires_grad_(False)
            for layer in enc.encoder.layers[:f]:
                for p in layer.parameters():
                    p.requires_grad_(False)
        elif f != "feature_extractor":
            raise ConfigError("freeze must be 'none', 'all', 'feature_extractor' or an int")

    def n_frames(self, length: int) -> int:
        for k, s in zip(self.conv_kernel, self.conv_stride, strict=True):
            length = (length - k) // s + 1
        return length

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frozen = self.freeze == "all"
        if frozen:
            self.encoder.eval()
        if self.layers == "all":
            return self._all_layers(x, frozen)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen):
            need_all = self.layers != "last"
            out = self.encoder(x, output_hidden_states=need_all)
        if self.layers == "last":
            return out.last_hidden_state
        hs = out.hidden_states
        if self.layers == "weighted":
            w = F.softmax(self.layer_weights, dim=0)
            return sum(w[i] * h for i, h in enumerate(hs))
        return hs[self.layers]

    def _all_layers(self, x: torch.Tensor, frozen: bool) -> torch.Tensor:
        last = []
        hook = self.encoder.encoder.layers[-1].register_forward_hook(
            lambda mod, inp, out: last.append(out[0] if isinstance(out, tuple) else out)
        )
        try:
            with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen):
                out = self.encoder(x, output_hidden_states=True)
        finally:
            hook.remove()
        return torch.stack(list(out.hidden_states[1:-1]) + [last[0]], dim=1)


@dataclass
class SSLConfig:
    encoder: str | None = None
    encoder_config: dict | None = None
    layers: object = "last"
    freeze: object = "none"
    proj_dim: int = 128  # the reference's LL: H -> 128 "frequency" rows
    filts: list = field(default_factory=lambda: [128, [1, 32], [32, 32], [32, 64], [64, 64]])
    gat_dims: list = field(default_factory=lambda: [64, 32])
    pool_ratios: list = field(default_factory=lambda: [0.5, 0.5, 0.5, 0.5])
    temperatures: list = field(default_factory=lambda: [2.0, 2.0, 100.0, 100.0])


class _SSLBase(nn.Module):
    #: fine-tuning groups: the self-supervised encoder
    frontend_modules = ("ssl_model",)

    def _setup(self, config: SSLConfig | None, overrides: dict) -> SSLConfig:
        """Build the front-end and the projection ``LL`` that both back-ends share."""
        cfg = merged_config(SSLConfig, config, overrides)
        self.config = cfg
        self.ssl_model = SSLFrontend(cfg.encoder, cfg.encoder_config, cfg.layers, cfg.freeze)
        self.LL = nn.Linear(self.ssl_model.hidden_size, cfg.proj_dim)
        return cfg

    min_frames = 1  # encoder frames the back-end needs

    @property
    def min_length(self) -> int:
        """Shortest input (samples) that gives ``min_frames`` encoder frames."""
        n = 1
        while self.ssl_model.n_frames(n) < self.min_frames:
            n += 1
        return n

    def optimizer_groups(self, lr: float, frontend_lr: float | None = None) -> list[dict]:
        """Parameter groups: the front-end at ``frontend_lr`` (default ``lr``), the rest at
        ``lr``; frozen parameters are left out."""
        front = [p for p in self.ssl_model.parameters() if p.requires_grad]
        ids = {id(p) for p in self.ssl_model.parameters()}
        rest = [p for p in self.parameters() if id(p) not in ids and p.requires_grad]
        groups = [{"params": rest, "lr": lr}]
        if front:
            groups.append({"params": front, "lr": frontend_lr or lr})
        return groups

    def _check(self, x):
        check_waveform(x, self.min_length, type(self).__name__)


class SSLAASIST(_SSLBase):
    """SSL front-end + AASIST back-end. (B, L) -> (logits (B, 2), hidden (B, 160))."""

    def __init__(self, config: SSLConfig | None = None, **overrides):
        super().__init__()
        cfg = self._setup(config, overrides)
        filts, gat = cfg.filts, cfg.gat_dims
        self.first_bn = nn.BatchNorm2d(1)
        self.first_bn1 = nn.BatchNorm2d(filts[-1][-1])
        self.drop = nn.Dropout(0.5)
        self.drop_way = nn.Dropout(0.2)
        # the SSL frame rate is low: the residual blocks do not pool along time
        self.encoder = nn.Sequential(
            nn.Sequential(Residual_block(filts[1], first=True, pool=False)),
            nn.Sequential(Residual_block(filts[2], pool=False)),
            nn.Sequential(Residual_block(filts[3], pool=False)),
            nn.Sequential(Residual_block(filts[4], pool=False)),
            nn.Sequential(Residual_block(filts[4], pool=False)),
            nn.Sequential(Residual_block(filts[4], pool=False)),
        )
        c = filts[-1][-1]
        self.attention = nn.Sequential(
            nn.Conv2d(c, 128, (1, 1)), nn.SELU(), nn.BatchNorm2d(128), nn.Conv2d(128, c, (1, 1))
        )
        build_graph_layers(self, c, cfg.proj_dim // 3, gat, cfg.pool_ratios, cfg.temperatures)
        self.embedding_dim = 5 * gat[1]

    min_frames = 3  # the 3x3 max-pool needs 3 frames

    def forward(self, x: torch.Tensor):
        self._check(x)
        return self.backend(self.ssl_model(x))

    def backend(self, feats: torch.Tensor, intermediates: dict | None = None):
        """``feats``: (B, T, H) encoder frames -> (logits (B, 2), hidden (B, 160))."""
        ll = self.LL(feats)
        h = ll.transpose(1, 2).unsqueeze(1)  # (B, 1, 128, T)
        h_in = F.selu(self.first_bn(F.max_pool2d(h, (3, 3))))
        h_out = self.encoder(h_in)
        h = F.selu(self.first_bn1(h_out))  # (B, C, 42, T')
        w = self.attention(h)
        e_S = torch.sum(h * F.softmax(w, dim=-1), dim=-1).transpose(1, 2) + self.pos_S
        e_T = torch.sum(h * F.softmax(w, dim=-2), dim=-2).transpose(1, 2)
        logits, hidden = graph_head(self, e_S, e_T)
        if intermediates is not None:
            intermediates.update(LL_out=ll, encoder_in=h_in, encoder_out=h_out, last_hidden=hidden)
        return logits, hidden


class SSLLinear(_SSLBase):
    """SSL front-end + projection, mean/std pooling and a linear classifier."""

    def __init__(self, config: SSLConfig | None = None, **overrides):
        super().__init__()
        cfg = self._setup(config, overrides)
        self.out_layer = nn.Linear(2 * cfg.proj_dim, 2)
        self.embedding_dim = 2 * cfg.proj_dim

    def forward(self, x: torch.Tensor):
        self._check(x)
        h = F.gelu(self.LL(self.ssl_model(x)))
        emb = torch.cat([h.mean(1), h.std(1, unbiased=False)], dim=1)
        return self.out_layer(emb), emb


_SSL_NOTE = "none shipped: convert a published checkpoint or train one"
_TAK_DRIVE = "https://drive.google.com/drive/folders/1c4ywztEVlYVijfwbGLl9OEa1SNtFKppB"
_TAK_MIT = "MIT License, Copyright (c) 2022 Hemlata (github.com/TakHemlata/SSL_Anti-spoofing)"


def _tak(track: str, filename: str, published: str) -> PretrainedWeights:
    return PretrainedWeights(
        url=_TAK_DRIVE,
        filename=filename,
        sha256=None,
        licence="MIT (c) 2022 Hemlata (code; the weights are published beside it)",
        notice=_TAK_MIT,
        trained_on=f"ASVspoof 2019 LA train, the authors' {track} recipe (RawBoost)",
        published=published,
        source="manual",
    )


@register_model(
    ModelCard(
        name="ssl-aasist",
        family="ssl",
        description="XLS-R 300M (or any wav2vec 2.0-family encoder) + the AASIST back-end "
        "(Tak et al., 2022)",
        export="fixed",  # graph pooling: the node count follows the length
        precisions=("fp32", "int8"),  # ONNX int8: within 6e-3 (benchmarks/precision.py)
        int8_engine="onnx",
        weights={
            "la": _tak("LA", "LA_model.pth", "EER 0.82 %, min t-DCF 0.2066 on ASVspoof 2021 LA"),
            "df": _tak("DF", "Best_LA_model_for_DF.pth", "EER 2.85 % on ASVspoof 2021 DF"),
        },
        training_data="ASVspoof 2019 LA train (published checkpoints)",
        published_results="authors: XLS-R + AASIST + RawBoost, 2021 LA EER 0.82 %, min t-DCF "
        "0.2066; 2021 DF EER 2.85 % (Tak et al., Odyssey 2022); In-the-Wild 10.46 % as "
        "reported in the Nes2Net README (third party)",
        licence="code MIT (c) 2022 Hemlata",
        encoder="XLS-R 300M, last layer after the final LayerNorm, fine-tuned",
    ),
    convert=lambda sd: convert_fairseq(sd),
)
def ssl_aasist(**overrides) -> SSLAASIST:
    """wav2vec 2.0-family front-end with the AASIST back-end (Tak et al., 2022)."""
    return SSLAASIST(None, **overrides)


@register_model(
    ModelCard(
        name="ssl-linear",
        family="ssl",
        description="wav2vec 2.0-family front-end with a light pooling + linear back-end",
        training_data=_SSL_NOTE,
        published_results="no published number for this exact back-end",
        licence="spoofscope (MIT)",
        encoder="XLS-R 300M by default (any wav2vec 2.0, WavLM or HuBERT encoder)",
    ),
    convert=lambda sd: convert_fairseq(sd),
)
def ssl_linear(**overrides) -> SSLLinear:
    """wav2vec 2.0-family front-end with a light pooling + linear back-end."""
    return SSLLinear(None, **overrides)


# ---- the fairseq SSL-AASIST checkpoint layout -------------------------------------------------
#: (fairseq key pattern, our key template); applied in order, first match wins.
FAIRSEQ_KEY_MAP = [
    (r"ssl_model\.model\.mask_emb", "ssl_model.encoder.masked_spec_embed"),
    (  # the bias is there when the model was built with conv_bias (XLS-R)
        r"ssl_model\.model\.feature_extractor\.conv_layers\.(\d+)\.0\.(weight|bias)",
        r"ssl_model.encoder.feature_extractor.conv_layers.\1.conv.\2",
    ),
    (
        r"ssl_model\.model\.feature_extractor\.conv_layers\.(\d+)\.2\.1\.(weight|bias)",
        r"ssl_model.encoder.feature_extractor.conv_layers.\1.layer_norm.\2",
    ),  # layer-norm mode
    (
        r"ssl_model\.model\.feature_extractor\.conv_layers\.(\d+)\.2\.(weight|bias)",
        r"ssl_model.encoder.feature_extractor.conv_layers.\1.layer_norm.\2",
    ),  # group-norm mode
    (
        r"ssl_model\.model\.layer_norm\.(weight|bias)",
        r"ssl_model.encoder.feature_projection.layer_norm.\1",
    ),
    (
        r"ssl_model\.model\.post_extract_proj\.(weight|bias)",
        r"ssl_model.encoder.feature_projection.projection.\1",
    ),
    (
        r"ssl_model\.model\.encoder\.pos_conv\.0\.bias",
        "ssl_model.encoder.encoder.pos_conv_embed.conv.bias",
    ),
    (
        r"ssl_model\.model\.encoder\.pos_conv\.0\.weight_g",
        "ssl_model.encoder.encoder.pos_conv_embed.conv.parametrizations.weight.original0",
    ),
    (
        r"ssl_model\.model\.encoder\.pos_conv\.0\.weight_v",
        "ssl_model.encoder.encoder.pos_conv_embed.conv.parametrizations.weight.original1",
    ),
    (
        r"ssl_model\.model\.encoder\.layer_norm\.(weight|bias)",
        r"ssl_model.encoder.encoder.layer_norm.\1",
    ),
    (
        r"ssl_model\.model\.encoder\.layers\.(\d+)\.self_attn\.(k|v|q|out)_proj\.(weight|bias)",
        r"ssl_model.encoder.encoder.layers.\1.attention.\2_proj.\3",
    ),
    (
        r"ssl_model\.model\.encoder\.layers\.(\d+)\.self_attn_layer_norm\.(weight|bias)",
        r"ssl_model.encoder.encoder.layers.\1.layer_norm.\2",
    ),
    (
        r"ssl_model\.model\.encoder\.layers\.(\d+)\.fc1\.(weight|bias)",
        r"ssl_model.encoder.encoder.layers.\1.feed_forward.intermediate_dense.\2",
    ),
    (
        r"ssl_model\.model\.encoder\.layers\.(\d+)\.fc2\.(weight|bias)",
        r"ssl_model.encoder.encoder.layers.\1.feed_forward.output_dense.\2",
    ),
    (
        r"ssl_model\.model\.encoder\.layers\.(\d+)\.final_layer_norm\.(weight|bias)",
        r"ssl_model.encoder.encoder.layers.\1.final_layer_norm.\2",
    ),
]
#: pre-training heads of the fairseq model that a countermeasure does not use
FAIRSEQ_DROPPED = re.compile(
    r"ssl_model\.model\.(quantizer|project_q|final_proj|"
    r"label_embs_concat|target_glu)"
)


def convert_fairseq_ssl_aasist(state_dict: dict) -> tuple[dict, list[str]]:
    """Map a fairseq-based SSL-AASIST state_dict onto ``ssl-aasist`` (``layers="last"``).

    Back-end keys (``LL``, ``first_bn``, ``encoder``, ``attention``, graph layers,
    ``out_layer``) keep their names; front-end keys follow :data:`FAIRSEQ_KEY_MAP`; the
    pre-training heads are dropped. Returns ``(new state_dict, dropped keys)``; an unknown
    ``ssl_model`` key raises ``ValueError``.
    """
    out, dropped = {}, []
    for k, v in state_dict.items():
        k2 = k[len("module.") :] if k.startswith("module.") else k  # DataParallel prefix
        if not k2.startswith("ssl_model."):
            out[k2] = v
            continue
        if FAIRSEQ_DROPPED.match(k2):
            dropped.append(k2)
            continue
        for pat, rep in FAIRSEQ_KEY_MAP:
            if re.fullmatch(pat, k2):
                out[re.sub(pat, rep, k2)] = v
                break
        else:
            raise WeightsError(f"unknown front-end key in the fairseq checkpoint: {k2}")
    return out, dropped


# ---- the XLS-R detector zoo: one base for XLSR-SLS, XLSR-Mamba, Nes2Net-X, TCM ---------------
@dataclass
class XLSRConfig:
    """The front-end of a published XLS-R detector.

    ``encoder_config`` None builds the XLS-R 300M architecture (:data:`XLSR_300M`, random
    weights until a checkpoint is loaded); tests pass a tiny config. ``encoder`` loads a
    ``transformers`` model by path or hub id instead. ``freeze`` as in :class:`SSLFrontend`.
    """

    encoder: str | None = None
    encoder_config: dict | None = None
    freeze: object = "none"


class XLSRDetector(_SSLBase):
    """Waveform (B, L) -> XLS-R features -> a published back-end -> (logits (B, 2), embedding).

    Subclasses build their back-end under the official module names in ``_build`` and map
    encoder features to ``(logits, embedding)`` in :meth:`backend`, which the parity tests
    call directly on the reference features.
    """

    #: which encoder output the back-end reads: "last" (after the final LayerNorm) or "all"
    #: (every layer before it, XLSR-SLS)
    layers = "last"
    min_frames = 1

    def __init__(self, config: XLSRConfig | None = None, **overrides):
        super().__init__()
        cfg = merged_config(XLSRConfig, config, overrides)
        self.config = cfg
        enc = cfg.encoder_config if cfg.encoder_config is not None else XLSR_300M
        self.ssl_model = SSLFrontend(
            cfg.encoder, None if cfg.encoder else enc, self.layers, cfg.freeze
        )
        self._build(self.ssl_model.hidden_size)

    def _build(self, hidden: int) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def backend(self, feats: torch.Tensor):  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor):
        self._check(x)
        return self.backend(self.ssl_model(x))


def convert_fairseq(state_dict: dict) -> dict:
    """The conversion hook of every SSL model: a published checkpoint in the fairseq layout
    (``ssl_model.model.*`` encoder keys, optionally ``module.`` prefixed) mapped onto ours
    (:data:`FAIRSEQ_KEY_MAP`; pre-training heads dropped). A state_dict already in our layout
    only loses its ``module.`` prefix."""
    if any(
        k.split(".", 2)[:2] == ["ssl_model", "model"] or k.startswith("module.ssl_model.model.")
        for k in state_dict
    ):
        return convert_fairseq_ssl_aasist(state_dict)[0]
    if state_dict and all(k.startswith("module.") for k in state_dict):
        return {k[len("module.") :]: v for k, v in state_dict.items()}
    return dict(state_dict)


def quantize_feed_forward(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose SSL encoder runs its feed-forward Linear layers in dynamic
    int8 (weights quantised per output channel, activations per batch; PyTorch's fbgemm).

    Measured on XLS-R 300M (``benchmarks/ssl_zoo.py``): about 1.3x faster on a 2-core AVX2 CPU
    with scores within 1e-2 of fp32; quantising every Linear layer (attention too) was faster
    still but moved scores by more than 1e-2, so it is not offered. The back-end stays fp32.
    """
    import copy
    import warnings

    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    q = copy.deepcopy(model).eval()
    targets = {
        name: per_channel_dynamic_qconfig
        for name, mod in q.ssl_model.named_modules()
        if isinstance(mod, nn.Linear) and "feed_forward" in name
    }
    if not targets:
        raise ConfigError("quantize_feed_forward: the encoder has no feed-forward Linear layers")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's deprecation notice
        q.ssl_model = quantize_dynamic(q.ssl_model, targets, dtype=torch.qint8)
    return q
