"""Write an example CM score file for the trials of a real ASVspoof protocol.

The scores are synthetic (a Gaussian per class, harder for some attacks, fixed seed): they stand
in for a countermeasure's output so that ``spoofscope evaluate`` can be tried on the official
protocol and ASV scores without any audio. Usage::

    python examples/example_scores.py PROTOCOL OUT_SCORES
"""

import sys

import numpy as np

from spoofscope.data import read_protocol
from spoofscope.evaluation import write_score_file


def main(protocol: str, out: str) -> None:
    trials = read_protocol(protocol)
    rng = np.random.default_rng(2019)
    attacks = sorted({t.attack for t in trials if t.label == 0})
    # each attack gets its own mean: some are easy, some are close to bona fide
    mean = dict(zip(attacks, np.linspace(-4.0, 0.5, len(attacks)), strict=True))
    scores = [
        rng.normal(2.0, 1.0) if t.label == 1 else rng.normal(mean[t.attack], 1.2) for t in trials
    ]
    write_score_file(
        out,
        [t.utt_id for t in trials],
        [t.attack for t in trials],
        [t.label for t in trials],
        scores,
    )


if __name__ == "__main__":
    main(*sys.argv[1:3])
