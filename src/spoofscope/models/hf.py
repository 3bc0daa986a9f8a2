"""Any Hugging Face ``transformers`` audio classifier as a spoofscope model.

``load_model("hf:OWNER/REPO[@REVISION]")`` (or ``"hf:FOLDER"``, a folder written by
``save_pretrained``) builds ``AutoModelForAudioClassification`` and its feature extractor and
wraps them in :class:`HFClassifier`:

* the bona fide class is found in ``id2label`` (real, bonafide, bona fide, genuine, human,
  authentic; ``bonafide_label=`` / ``--bonafide-label`` to say it);
* the input is prepared as the feature extractor says: its sampling rate, its normalisation
  (zero mean, unit variance for wav2vec 2.0-style extractors, done in the graph so the model
  exports to ONNX), or its own features (AST's filterbanks, computed by the extractor);
* the classifier's last Linear layer is replaced by an equivalent one whose outputs are
  ``[0, z_bona - z_other]``: the score is the logit difference (the log-odds the model's
  softmax gives), and the head is one Linear of the embedding it reads, so ``adapt`` can
  retrain it. With more than two labels the score is ``z_bona - logsumexp(z_others)``;
* the card comes from the config: sample rate, window (the extractor's maximum length, else
  4 s), licence from the repository's model card when it is in the cache or the folder.

Revisions and the cache follow the zoo: files come from ``$SPOOFSCOPE_CACHE/hub-cache``; a
revision pins a commit or tag; nothing is downloaded when the files are cached.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import ConfigError, WeightsError
from ._card import ModelCard
from ._registry import merged_config, register_model

#: labels that name the bona fide class (compared without case, spaces, '-' and '_')
BONAFIDE_LABELS = ("real", "bonafide", "genuine", "human", "authentic", "bona", "live")

#: files a classifier needs (weights in safetensors preferred over pickles)
_FILES = ["config.json", "preprocessor_config.json", "*.safetensors", "README.md"]


def _norm(label: str) -> str:
    return re.sub(r"[\s_\-]+", "", str(label)).lower()


def bonafide_class(id2label: dict, wanted: str | None = None) -> int:
    """The index of the bona fide class among ``id2label`` (``wanted`` names it)."""
    labels = {int(k): str(v) for k, v in id2label.items()}
    shown = ", ".join(f"{k}={v!r}" for k, v in sorted(labels.items()))
    if wanted is not None:
        hits = [k for k, v in labels.items() if _norm(v) == _norm(wanted)]
        if not hits:
            raise ConfigError(
                f"--bonafide-label {wanted!r} is not one of the model's labels ({shown})"
            )
        return hits[0]
    hits = [k for k, v in labels.items() if _norm(v) in BONAFIDE_LABELS]
    if len(hits) != 1:
        why = "none of them" if not hits else "more than one"
        raise ConfigError(
            f"cannot tell which class is bona fide: the labels are {shown} and {why} reads as "
            "real/bonafide/genuine/human; name it with --bonafide-label LABEL "
            "(bonafide_label=...)"
        )
    return hits[0]


def _last_linear(module: nn.Module) -> tuple[nn.Module, str, nn.Linear]:
    """(parent, attribute, layer) of the classifier's final Linear."""
    if isinstance(module, nn.Linear):
        raise ConfigError("internal: pass the classifier's parent")
    head = getattr(module, "classifier", None)
    if isinstance(head, nn.Linear):
        return module, "classifier", head
    if head is not None:
        last = [(n, m) for n, m in head.named_children() if isinstance(m, nn.Linear)]
        if last:
            return head, last[-1][0], last[-1][1]
    raise ConfigError(
        f"{type(module).__name__}: no Linear classifier found (model.classifier); spoofscope "
        "reads audio-classification models whose last layer is a Linear"
    )


@dataclass
class HFClassifierConfig:
    """``source``: ``hf:OWNER/REPO[@REVISION]`` or ``hf:FOLDER``; ``encoder_config``: a
    ``transformers`` wav2vec 2.0 config dict for a random classifier (tests);
    ``bonafide_label``: the bona fide class's label when ``id2label`` does not say."""

    source: str | None = None
    bonafide_label: str | None = None
    encoder_config: dict | None = None
    cache_dir: str | None = None


class HFClassifier(nn.Module):
    """(B, L) waveform -> (logits (B, 2) = [0, log-odds of bona fide], embedding (B, D))."""

    head_modules = ("head",)

    def __init__(self, config: HFClassifierConfig | None = None, **overrides):
        super().__init__()
        cfg = merged_config(HFClassifierConfig, config, overrides)
        self.config = cfg
        model, fe, folder = _build(cfg)
        self.fe = fe
        self.sample_rate = int(getattr(fe, "sampling_rate", 16000) or 16000)
        self.raw_waveform = type(fe).__name__ == "Wav2Vec2FeatureExtractor"
        self.normalize = bool(getattr(fe, "do_normalize", False)) and self.raw_waveform
        labels = model.config.id2label
        parent, attr, last = _last_linear(model)
        if min(len(labels), last.out_features) < 2:
            raise ConfigError(
                f"{cfg.source or 'hf-classifier'}: the classifier has "
                f"{min(len(labels), last.out_features)} label(s) ({dict(labels)}); telling bona "
                "fide from spoof needs a head with at least two (num_labels >= 2)"
            )
        bona = bonafide_class(labels, cfg.bonafide_label)
        setattr(parent, attr, nn.Identity())  # the model now returns what its head reads
        self.net = model.eval()
        self.n_labels = last.out_features
        self.bona = bona
        d = last.in_features
        if self.n_labels == 2:  # one Linear: [0, z_bona - z_other]
            self.head = nn.Linear(d, 2)
            with torch.no_grad():
                w, b = last.weight, last.bias if last.bias is not None else torch.zeros(2)
                self.head.weight.zero_()
                self.head.bias.zero_()
                self.head.weight[1] = w[bona] - w[1 - bona]
                self.head.bias[1] = b[bona] - b[1 - bona]
        else:
            self.head = last
        self.embedding_dim = d
        self.labels = {int(k): str(v) for k, v in labels.items()}
        self.card_overrides = _card_fields(cfg, model, fe, folder, self.labels[bona])
        weights = (
            sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")) if folder else []
        )
        self.weights_file = weights[0] if weights else None  # what the service digests

    @property
    def min_length(self) -> int:
        conf = self.net.config
        kernels, strides = getattr(conf, "conv_kernel", None), getattr(conf, "conv_stride", None)
        if kernels and strides:  # the shortest input that gives one frame
            n = 1
            for k, s in zip(reversed(kernels), reversed(strides), strict=True):
                n = (n - 1) * s + k
            return n
        return int(0.025 * self.sample_rate)  # one 25-ms analysis frame

    def _inputs(self, x: torch.Tensor) -> dict:
        if self.raw_waveform:
            if self.normalize:  # Wav2Vec2FeatureExtractor's zero_mean_unit_var_norm
                m = x.mean(dim=-1, keepdim=True)
                v = x.var(dim=-1, keepdim=True, unbiased=False)
                x = (x - m) / torch.sqrt(v + 1e-7)
            return {"input_values": x}
        feats = self.fe(
            [row.detach().cpu().numpy() for row in x],
            sampling_rate=self.sample_rate,
            return_tensors="pt",
        )
        name = self.fe.model_input_names[0]
        return {name: feats[name].to(x.device)}

    def forward(self, x: torch.Tensor):
        from ._registry import check_waveform

        check_waveform(x, self.min_length, self.card_overrides["name"], self.sample_rate)
        emb = self.net(**self._inputs(x)).logits
        z = self.head(emb)
        if self.n_labels == 2:
            return z, emb
        others = torch.cat([z[:, : self.bona], z[:, self.bona + 1 :]], dim=1)
        return torch.stack(
            [torch.zeros_like(z[:, 0]), z[:, self.bona] - others.logsumexp(1)], 1
        ), emb


def _split(source: str) -> tuple[str, str | None]:
    spec = source[len("hf:") :] if source.startswith("hf:") else source
    if not spec:
        raise ConfigError("hf: needs OWNER/REPO[@REVISION] or a folder (hf:./my-model)")
    if Path(spec).is_dir():
        return spec, None
    repo, _, rev = spec.partition("@")
    return repo, (rev or None)


def _files(cfg: HFClassifierConfig) -> Path:
    """The folder holding the classifier's files: the user's folder, or a snapshot of the
    repository in the cache (fetched when missing and the Hub can be reached)."""
    repo, rev = _split(cfg.source)
    if Path(repo).is_dir():
        return Path(repo)
    if repo.startswith((".", "/", "~", "\\")) or Path(repo).exists():  # a path, not OWNER/REPO
        raise WeightsError(f"hf:{repo}: no such folder")
    if repo.count("/") != 1 or Path(repo).suffix:
        raise WeightsError(
            f"hf:{repo}: no such folder, and not a Hugging Face repository id (OWNER/REPO)"
        )
    try:
        from huggingface_hub import snapshot_download
    except ImportError:  # pragma: no cover - comes with transformers
        raise WeightsError(
            "hf: models need huggingface_hub (pip install 'spoofscope[ssl]')"
        ) from None
    from ._pretrained import _hub_unreachable, cache_dir

    where = str(cache_dir(cfg.cache_dir) / "hub-cache")
    kw = dict(revision=rev, cache_dir=where, allow_patterns=_FILES)
    try:
        return Path(snapshot_download(repo, local_files_only=True, **kw))
    except Exception:  # noqa: BLE001 - not cached (yet)
        pass
    unreachable = _hub_unreachable()
    at = f"@{rev}" if rev else ""
    if unreachable:
        raise WeightsError(
            f"hf:{repo}{at} is not in the cache ({where}) and the Hugging Face Hub cannot be "
            f"reached ({unreachable}); download it where there is a network (huggingface-cli "
            f"download {repo} --cache-dir {where}) or pass a local folder (hf:FOLDER)"
        )
    try:
        return Path(snapshot_download(repo, **kw))
    except Exception as e:  # noqa: BLE001 - missing repo, revision, HTTP errors
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise WeightsError(f"hf:{repo}{at}: cannot fetch it ({reason[:200]})") from None


def _build(cfg: HFClassifierConfig):
    try:
        import transformers
    except ImportError as e:
        raise ModuleNotFoundError(
            "hf: models need transformers: pip install 'spoofscope[ssl]'", name="transformers"
        ) from e

    if cfg.encoder_config is not None:  # a random wav2vec 2.0 classifier (tests, registry)
        conf = dict(cfg.encoder_config)
        conf.pop("model_type", None)
        conf.setdefault("id2label", {0: "spoof", 1: "bonafide"})
        conf.setdefault("label2id", {v: k for k, v in conf["id2label"].items()})
        model = transformers.Wav2Vec2ForSequenceClassification(transformers.Wav2Vec2Config(**conf))
        return model, transformers.Wav2Vec2FeatureExtractor(do_normalize=True), None
    if not cfg.source:
        raise ConfigError("hf-classifier needs source='hf:OWNER/REPO' or 'hf:FOLDER'")
    folder = _files(cfg)
    tf_log = transformers.utils.logging
    bars = tf_log.is_progress_bar_enabled()
    tf_log.disable_progress_bar()  # a local load needs no progress bar (nor does --quiet)
    try:
        model = transformers.AutoModelForAudioClassification.from_pretrained(str(folder))
        fe = transformers.AutoFeatureExtractor.from_pretrained(str(folder))
    except Exception as e:  # noqa: BLE001 - OSError, ValueError, SafetensorError ...: all broken
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise WeightsError(
            f"{cfg.source}: not a transformers audio-classification model, or its files are "
            f"damaged ({type(e).__name__}: {first[:200]})"
        ) from None
    finally:
        if bars:
            tf_log.enable_progress_bar()
    return model, fe, folder


def _licence(folder: Path | None) -> str:
    """The ``license`` of the repository's model card (its YAML front matter)."""
    readme = folder / "README.md" if folder else None
    if readme is None or not readme.is_file():
        return ""
    text = readme.read_text(errors="replace")
    m = re.match(r"---\s*\n(.*?)\n---", text, re.S)
    if not m:
        return ""
    import yaml

    try:
        meta = yaml.safe_load(m.group(1)) or {}
    except yaml.YAMLError:
        return ""
    lic = meta.get("license") if isinstance(meta, dict) else None
    return str(lic) if lic else ""


def _card_fields(cfg, model, fe, folder, bona_label: str) -> dict:
    sr = int(getattr(fe, "sampling_rate", 16000) or 16000)
    max_frames = getattr(fe, "max_length", None)
    if isinstance(max_frames, int) and max_frames > 0 and not hasattr(model.config, "conv_kernel"):
        # a filterbank extractor (AST): 25-ms frames every 10 ms, padded/cut to max_length
        window = int(round((max_frames - 1) * 0.010 * sr + 0.025 * sr))
        how = f"the extractor's {max_frames} frames ({window / sr:.2f} s)"
    else:
        window, how = 4 * sr, "4 s (the model states no maximum length)"
    name = cfg.source or "hf-classifier"
    lic = _licence(folder)
    repo = _split(cfg.source)[0] if cfg.source else None
    page = f"https://huggingface.co/{repo}" if repo and not Path(repo).is_dir() else "its folder"
    return dict(
        name=name,
        description=f"{type(model).__name__} from {name}",
        sample_rate=sr,
        window_samples=window,
        window_policy=f"{how}; sliding windows over longer files",
        score=f"logit of {bona_label!r} minus the other class's (log-odds of bona fide)",
        export="dynamic" if type(fe).__name__ == "Wav2Vec2FeatureExtractor" else "none",
        licence=lic or "none stated in the model card",
        training_data=f"not known to spoofscope: read the model's page ({page})",
        published_results="none known to spoofscope (a community checkpoint)",
        notes="a community checkpoint that spoofscope has not measured; its probability is "
        "the model's own softmax, not calibrated (spoofscope calibrate)",
        encoder=type(model).__name__,
    )


@register_model(
    ModelCard(
        name="hf-classifier",
        family="hf",
        description="any transformers audio-classification model (load it as hf:OWNER/REPO)",
        score="logit of the bona fide class minus the other's (log-odds)",
        window_policy="the extractor's maximum length, else 4 s",
        training_data="that of the wrapped checkpoint",
        licence="that of the wrapped checkpoint",
        encoder="a transformers audio classifier",
    )
)
def hf_classifier(**overrides) -> HFClassifier:
    """A transformers audio classifier (``source='hf:OWNER/REPO[@REV]'`` or a folder)."""
    return HFClassifier(None, **overrides)


def is_hf_source(source) -> bool:
    return isinstance(source, str) and source.startswith("hf:")


__all__ = ["BONAFIDE_LABELS", "HFClassifier", "bonafide_class", "is_hf_source"]
