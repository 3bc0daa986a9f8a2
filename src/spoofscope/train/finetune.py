"""Fine-tuning: which parameters a recipe keeps fixed, and the head a model scores with.

``freeze`` names, per family (each model class lists its ``frontend_modules`` and, where the
final layer is not simply its last ``Linear``, its ``head_modules``):

* ``frontend``: the front-end (AASIST: sinc filters, first BatchNorm and the residual encoder;
  RawNet2: sinc stage and first residual stage; LCNN: LFCC and CNN; SSL models: the encoder);
* ``all_but_head``: everything but the final bona fide/spoof layer;
* any other name: a parameter-name prefix (``encoder.0``, ``ssl_model.encoder.layers.0``).
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError


def head_names(model: nn.Module) -> tuple[str, ...]:
    """Module names of the final bona fide/spoof layer."""
    names = getattr(model, "head_modules", None)
    if names:
        return tuple(names)
    last = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not last:
        raise ConfigError(f"{type(model).__name__} has no Linear layer to keep as its head")
    return (last[-1],)


def _under(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def frozen_parameter_names(model: nn.Module, freeze: list[str]) -> list[str]:
    """The parameter names ``freeze`` selects (see the module docstring)."""
    names = [n for n, _ in model.named_parameters()]
    out: set[str] = set()
    for item in freeze:
        if item == "frontend":
            front = getattr(model, "frontend_modules", None)
            if not front:
                raise ConfigError(
                    f"freeze: {type(model).__name__} names no front-end; list parameter "
                    "prefixes instead"
                )
            chosen = [n for n in names if _under(n, front)]
        elif item == "all_but_head":
            head = head_names(model)
            chosen = [n for n in names if not _under(n, head)]
        else:
            chosen = [n for n in names if _under(n, [item])]
            if not chosen:
                tops = sorted({n.split(".")[0] for n in names})
                raise ConfigError(
                    f"freeze: {item!r} matches no parameter of {type(model).__name__}; use "
                    f"frontend, all_but_head or a prefix such as {', '.join(tops[:8])}"
                )
        out.update(chosen)
    return [n for n in names if n in out]


def set_frozen(model: nn.Module, names: list[str], frozen: bool = True) -> None:
    chosen = set(names)
    for n, p in model.named_parameters():
        if n in chosen:
            p.requires_grad_(not frozen)


def keep_frozen_statistics(model: nn.Module) -> None:
    """Put every normalisation layer inside a frozen part in eval mode, so that the part keeps
    its running statistics (call after ``model.train()``). A layer is inside a frozen part when
    it, or a module around it, has parameters and all of them are frozen (a BatchNorm without
    affine parameters counts with the block around it)."""
    frozen_parts = [
        name
        for name, m in model.named_modules()
        if (ps := list(m.parameters())) and not any(p.requires_grad for p in ps)
    ]
    for name, m in model.named_modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and any(
            name == f or name.startswith(f + ".") or f == "" for f in frozen_parts
        ):
            m.eval()


def head_matches_embedding(model: nn.Module, length: int) -> nn.Linear | None:
    """The head as a ``Linear`` on the model's returned embedding, if the logits are that
    layer of the embedding (checked on a probe): then training only the head can run on cached
    embeddings."""
    head = head_names(model)
    if len(head) != 1:
        return None
    layer = dict(model.named_modules()).get(head[0])
    if isinstance(layer, nn.ModuleList) and len(layer) == 1:
        layer = layer[0]  # the LCNN baseline keeps its output layer in a list
    if not isinstance(layer, nn.Linear) or layer.out_features not in (1, 2):
        return None
    was = model.training
    model.eval()
    with torch.no_grad():
        x = torch.randn(2, length, generator=torch.Generator().manual_seed(0)) * 0.1
        logits, emb = model(x)
        ok = emb.shape[-1] == layer.in_features and torch.allclose(
            head_logits(layer, emb), logits, atol=1e-4, rtol=1e-4
        )
    model.train(was)
    return layer if ok else None


def head_logits(layer: nn.Linear, emb: torch.Tensor) -> torch.Tensor:
    """(B, 2) logits of a head: its two outputs, or ``[0, s]`` for a one-output head (the
    LCNN baseline's single score)."""
    s = layer(emb)
    return s if layer.out_features == 2 else torch.cat([torch.zeros_like(s), s], dim=1)
