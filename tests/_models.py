"""Stand-in models for the tests: real networks whose score follows what they hear.

An untrained network scores every window nearly the same (an LFCC-LCNN spans about 1e-3),
so a test could not tell a decoding error from rounding. :func:`responsive_lcnn` keeps an
untrained LFCC-LCNN but points its output layer along the difference between the pooled
embeddings of a tone and of noise: a tone window scores about ``+gap / 2``, a noise window
about ``-gap / 2``, mixtures in between."""

import numpy as np
import torch

import spoofscope

SR = 16000


def responsive_lcnn(seed: int = 0, gap: float = 2.0):
    """An LFCC-LCNN (``create_model("lfcc-lcnn")``, savable as a checkpoint), in eval mode,
    whose score separates a 200-Hz tone (bona fide side) from white noise (spoof side)."""
    torch.manual_seed(seed)
    m = spoofscope.create_model("lfcc-lcnn").eval()
    t = np.arange(2 * SR) / SR
    tone = 0.3 * np.sin(2 * np.pi * 200 * t)
    noise = 0.1 * np.random.default_rng(seed).standard_normal(t.size)
    x = torch.from_numpy(np.stack([tone, noise]).astype(np.float32))
    with torch.no_grad():
        e = m(x)[1].double()
        d = e[0] - e[1]
        w = d * gap / float(d @ d)
        head = m.m_output_act[0]
        head.weight.copy_(w[None].float())
        head.bias.fill_(-float(w @ (e[0] + e[1])) / 2)
    return m
