import time

import numpy as np
import pytest

from spoofscope import metrics as M

SETS = ["easy", "hard", "ties"]
TOL = 1e-9


def _arrays(npz, s):
    return [npz[f"{s}_{k}"] for k in ("bona", "spoof", "tar", "non", "spoof_asv")]


def test_det_curve_by_hand():
    # 2 targets, 2 non-targets, a tie between a target and a non-target at 0.5
    miss, fa, thr = M.det_curve([0.5, 2.0], [0.5, -1.0])
    # sorted (stable, targets first): -1(n) 0.5(t) 0.5(n) 2(t)
    np.testing.assert_allclose(miss, [0, 0, 0.5, 0.5, 1.0])
    np.testing.assert_allclose(fa, [1, 0.5, 0.5, 0.0, 0.0])
    np.testing.assert_allclose(thr, [-1.001, -1.0, 0.5, 0.5, 2.0])
    eer, t = M.compute_eer([0.5, 2.0], [0.5, -1.0])
    assert eer == 0.5 and t == 0.5  # first argmin of |miss-fa| is index 2 (|0.5-0.5|=0)


def test_perfect_separation_has_zero_eer():
    eer, thr = M.compute_eer([3, 4, 5], [0, 1, 2])
    assert eer == 0.0 and thr == 2.0


@pytest.mark.parametrize("s", SETS)
def test_eer_and_2019_tdcf_match_official(metrics_golden, s):
    npz, js = metrics_golden
    g = js["sets"][s]
    bona, spoof, tar, non, spf = _arrays(npz, s)
    eer, thr = M.compute_eer(bona, spoof)
    assert abs(eer - g["eer_cm"]) < TOL and abs(thr - g["eer_cm_threshold"]) < TOL
    asv = M.asv_error_rates(tar, non, spf)
    assert abs(asv.eer - g["eer_asv"]) < TOL
    assert abs(asv.threshold - g["asv_threshold"]) < TOL
    for k in ("Pfa_asv", "Pmiss_asv", "Pmiss_spoof_asv"):
        assert abs(getattr(asv, k) - g[k]) < TOL, k
    res = M.tdcf_2019(bona, spoof, asv)
    assert abs(res.C1 - g["C1"]) < TOL and abs(res.C2 - g["C2"]) < TOL
    assert abs(res.min_tdcf - g["min_tDCF"]) < TOL
    assert res.index == g["min_tDCF_index"]
    assert abs(res.cm_threshold - g["min_tDCF_cm_threshold"]) < TOL
    np.testing.assert_allclose(res.curve, npz[f"{s}_tDCF_curve"], rtol=0, atol=TOL)
    np.testing.assert_allclose(res.cm_thresholds, npz[f"{s}_CM_thresholds"], rtol=0, atol=TOL)
    pa = M.per_attack_eer(bona, spoof, npz[f"{s}_spoof_attack"])
    assert list(pa) == sorted(g["eer_cm_per_attack"])
    for a, v in g["eer_cm_per_attack"].items():
        assert abs(pa[a] - v) < TOL, a
    rep = M.evaluate_scores(bona, spoof, npz[f"{s}_spoof_attack"], (tar, non, spf))
    assert rep.to_dict()["eer_percent"] == pytest.approx(g["calculate_tDCF_EER_return"][0], abs=TOL)
    assert rep.min_tdcf == pytest.approx(g["calculate_tDCF_EER_return"][1], abs=TOL)


@pytest.mark.parametrize("s", SETS)
def test_2021_tdcf_matches_official(metrics_golden, metrics_more_golden, s):
    npz, _ = metrics_golden
    more, js = metrics_more_golden
    g = js["asvspoof2021"]["sets"][s]
    bona, spoof, tar, non, spf = _arrays(npz, s)
    asv = M.asv_error_rates(tar, non, spf)
    assert abs(asv.Pfa_spoof_asv - g["Pfa_spoof_asv"]) < TOL
    res = M.tdcf_2021(bona, spoof, asv)
    for k in ("C0", "C1", "C2"):
        assert abs(getattr(res, k) - g[k]) < TOL, k
    assert abs(res.min_tdcf - g["min_tDCF_2021"]) < TOL
    assert res.index == g["min_tDCF_2021_index"]
    assert abs(res.cm_threshold - g["min_tDCF_2021_cm_threshold"]) < TOL
    np.testing.assert_allclose(res.curve, more[f"{s}_tDCF2021_curve"], rtol=0, atol=TOL)
    np.testing.assert_allclose(res.cm_thresholds, more[f"{s}_tDCF2021_CM_thresholds"], atol=TOL)
    legacy = M.tdcf_2019(bona, spoof, asv)
    np.testing.assert_allclose(legacy.curve, more[f"{s}_tDCFlegacy_curve"], rtol=0, atol=TOL)
    # the closed form relating the two (README_more 3.2), computed here independently
    m = min(g["C1"], g["C2"])
    expect = (g["C0"] + g["min_tDCF_legacy_2019"] * m) / (g["C0"] + m)
    assert abs(res.min_tdcf - expect) < 1e-12


@pytest.mark.parametrize("s", SETS)
def test_asvspoof5_track1_matches_official(metrics_golden, metrics_more_golden, s):
    npz, _ = metrics_golden
    _, js = metrics_more_golden
    g = js["asvspoof5"]["sets"][s]["track1"]
    bona, spoof, *_ = _arrays(npz, s)
    v, thr = M.min_dcf(bona, spoof)
    assert abs(v - g["minDCF"]) < TOL and abs(thr - g["minDCF_threshold"]) < TOL
    v, thr = M.act_dcf(bona, spoof)
    assert abs(v - g["actDCF"]) < TOL and abs(thr - g["actDCF_threshold"]) < TOL
    assert abs(M.cllr(bona, spoof) - g["cllr_bits"]) < TOL


@pytest.mark.parametrize("s", SETS)
def test_asvspoof5_a_dcf_matches_official(metrics_golden, metrics_more_golden, s):
    npz, _ = metrics_golden
    _, js = metrics_more_golden
    g = js["asvspoof5"]["sets"][s]["a_dcf_full_asv_arrays"]
    _, _, tar, non, spf = _arrays(npz, s)
    v, thr = M.min_a_dcf(tar, non, spf)
    assert abs(v - g["pkg_track2_cost"]["min_a_dcf"]) < TOL
    assert abs(thr - g["pkg_track2_cost"]["threshold"]) < TOL
    v, thr = M.min_a_dcf(tar, non, spf, M.ADCF_PAPER_COST)
    assert abs(v - g["a_dcf_py_default_cost"]["min_a_dcf"]) < TOL
    assert abs(thr - g["a_dcf_py_default_cost"]["threshold"]) < TOL


def test_cllr_formula_and_extreme_scores():
    b, s = np.array([2.0, -1.0]), np.array([-3.0, 0.5])
    ref = 0.5 * (np.mean(np.log1p(np.exp(-b))) + np.mean(np.log1p(np.exp(s)))) / np.log(2)
    assert M.cllr(b, s) == pytest.approx(ref, abs=1e-12)
    assert np.isfinite(M.cllr([-1000.0], [1000.0]))  # the log1p(exp) form would be inf


def test_bad_scores_raise():
    with pytest.raises(ValueError, match="NaN"):
        M.compute_eer([1.0, np.nan], [0.0])
    with pytest.raises(ValueError, match="no scores"):
        M.compute_eer([], [0.0])


def test_full_eval_size_is_fast():
    rng = np.random.default_rng(0)
    bona, spoof = rng.normal(2, 1, 7355), rng.normal(-1, 1, 63882)
    tar, non, spf = rng.normal(3, 1, 5370), rng.normal(-2, 1, 33327), rng.normal(0, 1, 63882)
    t = time.perf_counter()
    rep = M.evaluate_scores(bona, spoof, None, (tar, non, spf))
    elapsed = time.perf_counter() - t
    # not a timing assertion: just report. The value: N(2, 1) against N(-1, 1) cross at 0.5,
    # where each class errs with probability Phi(-1.5) = 6.68 %
    from scipy.stats import norm

    assert rep.eer_percent == pytest.approx(100 * norm.cdf(-1.5), abs=0.5)
    print(f"EER + min t-DCF over 71,237 trials: {elapsed * 1000:.1f} ms")
