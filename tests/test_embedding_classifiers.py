import numpy as np
import torch

import spoofscope
from spoofscope.metrics import compute_eer
from spoofscope.models import LogisticClassifier, MLPClassifier, extract_embeddings


def test_xvector_embeddings_feed_a_separate_backend():
    torch.manual_seed(0)
    model = spoofscope.create_model("lfcc-xvector")
    rng = np.random.default_rng(0)
    t = np.arange(8000) / 16000
    # "bona fide": harmonic tones; "spoof": white noise. Random-weight embeddings separate them.
    bona = [0.3 * np.sin(2 * np.pi * rng.uniform(100, 300) * t) for _ in range(20)]
    spoof = [0.3 * rng.standard_normal(8000) for _ in range(20)]
    x = np.stack(bona + spoof).astype(np.float32)
    y = np.array([1] * 20 + [0] * 20)
    emb = extract_embeddings(model, x, batch_size=8)
    assert emb.shape == (40, 512)
    for backend in (LogisticClassifier(512), MLPClassifier(512)):
        s = backend.fit(emb[::2], y[::2]).score(emb[1::2])
        eer, _ = compute_eer(s[y[1::2] == 1], s[y[1::2] == 0])
        assert eer < 0.1
