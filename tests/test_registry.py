"""The same checks for every registered model (timm-style)."""

import dataclasses

import numpy as np
import pytest
import torch

import spoofscope
from spoofscope.models import (
    EXPORT_MODES,
    ModelCard,
    get_card,
    load_checkpoint,
    save_checkpoint,
)
from spoofscope.models.ssl import TINY_ENCODER

ALL = spoofscope.list_models()
# small but legal inputs: 0.5 s (or the nearest length the model takes)
LEN = 8000
#: models that read a self-supervised encoder get a tiny random one here (XLS-R 300M is the
#: default); 64 wide so that every back-end's channel split works
TINY64 = dict(TINY_ENCODER, hidden_size=64)  # every back-end splits 64 channels


def _create(name):
    small = {"encoder_config": TINY64} if get_card(name).encoder else {}
    return spoofscope.create_model(name, **small)


def _len(model, want=LEN):
    card = model.card
    n = max(want, card.min_length)
    return min(n, card.max_length) if card.max_length else n


def _toy_batch(n=4, length=LEN, seed=0):
    """Half tones (bona fide), half noise (spoof)."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(length) / 16000
    bona = [0.3 * torch.sin(2 * torch.pi * (150 + 40 * i) * t) for i in range(n // 2)]
    spoof = [0.3 * torch.randn(length, generator=g) for _ in range(n - n // 2)]
    x = torch.stack(bona + spoof)
    y = torch.tensor([1] * (n // 2) + [0] * (n - n // 2))
    return x, y


@pytest.fixture(scope="module", params=ALL)
def model(request):
    torch.manual_seed(0)
    return _create(request.param).eval()


def test_registry_names_and_unknown():
    want = {"aasist", "aasist-l", "rawnet2", "lfcc-xvector", "cqcc-xvector", "lfcc-lcnn"}
    assert want <= set(ALL)
    with pytest.raises(ValueError) as e:
        spoofscope.create_model("wav2vec-magic")
    assert "aasist" in str(e.value) and "lfcc-lcnn" in str(e.value)


def test_forward_shapes_and_embedding(model):
    x, _ = _toy_batch(3, _len(model))
    with torch.no_grad():
        logits, emb = model(x)
    assert logits.shape == (3, 2) and logits.dtype == torch.float32
    assert emb.shape == (3, model.embedding_dim)
    assert torch.isfinite(logits).all() and torch.isfinite(emb).all()


def test_batch_equals_items(model):
    x, _ = _toy_batch(3, _len(model))
    with torch.no_grad():
        batch = model(x)[0]
        single = torch.cat([model(x[i : i + 1])[0] for i in range(3)])
    np.testing.assert_allclose(batch.numpy(), single.numpy(), atol=1e-5)


def test_eval_determinism(model):
    x, _ = _toy_batch(2, _len(model))
    with torch.no_grad():
        a, b = model(x)[0], model(x)[0]
    assert torch.equal(a, b)


def test_card_is_complete_and_describes_the_built_model(model):
    card = model.card
    assert isinstance(card, ModelCard)
    assert card.name == model.registry_name or card.family == "hf"
    assert card.family and card.description and card.published_results and card.licence
    # min_length is read off the built model; the registered card is otherwise the same, but
    # for a wrapper that reads its card from the checkpoint's files (hf-classifier)
    assert card.min_length == model.min_length >= 1
    assert card == dataclasses.replace(
        get_card(model.registry_name),
        **getattr(model, "card_overrides", {}),
        min_length=model.min_length,
        max_length=getattr(model, "max_length", None),
    )
    assert card.window_samples >= card.min_length and card.sample_rate > 0
    assert card.export in EXPORT_MODES and card.bonafide_index in (0, 1)
    for w in card.weights.values():
        assert w.url.startswith("https://") and w.licence and w.notice and w.published
        # a direct download is always verified; other sources carry a sha256 where one is known
        assert (w.sha256 is not None and len(w.sha256) == 64) or w.source != "url"
        assert (w.hf_repo is not None) == (w.source == "hf")
    assert ModelCard.from_dict(card.to_dict()) == card  # survives a checkpoint


def test_variable_lengths_down_to_minimum(model):
    m, top = model.card.min_length, model.card.max_length
    with torch.no_grad():
        for n in (m, m + 1, m + 777, 2 * LEN):
            if n >= m and (top is None or n <= top):
                assert model(torch.randn(1, n) * 0.1)[0].shape == (1, 2)
        if top is not None:
            assert model(torch.randn(1, top) * 0.1)[0].shape == (1, 2)
            with pytest.raises(ValueError, match=str(top)):
                model(torch.randn(1, top + 1))
        with pytest.raises(ValueError, match=f"at least {m}"):
            model(torch.randn(1, m - 1))


def test_save_load_round_trip(model, tmp_path):
    x, _ = _toy_batch(2, _len(model))
    path = save_checkpoint(model, tmp_path / "m.ckpt", config={"lr": 1e-4})
    loaded, ckpt = load_checkpoint(path)
    assert ckpt["arch"] == model.registry_name and ckpt["config"] == {"lr": 1e-4}
    assert ckpt["versions"]["torch"] == torch.__version__
    with torch.no_grad():
        assert torch.equal(model(x)[0], loaded(x)[0])
    assert loaded.card == model.card and ckpt["card"] == model.card.to_dict()


def test_training_step_changes_weights_and_lowers_loss(model):
    torch.manual_seed(0)
    m = _create(model.registry_name)
    x, y = _toy_batch(4, _len(model))
    before = {k: v.clone() for k, v in m.state_dict().items()}
    opt = torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr=1e-3)
    m.train()

    def loss_now():
        torch.manual_seed(1)  # the same dropout masks for each measurement
        return torch.nn.functional.cross_entropy(m(x)[0], y)

    with torch.no_grad():
        l0 = loss_now().item()
    for _ in range(5):
        opt.zero_grad()
        loss = loss_now()
        loss.backward()
        opt.step()
    with torch.no_grad():
        l1 = loss_now().item()
    changed = [k for k, v in m.state_dict().items() if not torch.equal(v, before[k])]
    assert any("weight" in k for k in changed)
    assert l1 < l0, (l0, l1)


def test_create_model_overrides():
    m = spoofscope.create_model(
        "aasist", gat_dims=[24, 32], filts=[70, [1, 32], [32, 32], [32, 24], [24, 24]]
    )
    # AASIST's architecture with AASIST-L's widths: AASIST-L's published parameter count
    assert sum(p.numel() for p in m.parameters()) == 85306
    assert m.model_args["gat_dims"] == [24, 32]
