"""Slower checks of hbi_repro.banzhaf: exact vs enumeration on many random games, Monte Carlo convergence,
padding invariance, symmetries, the official estimand, prediction headers, the learned estimator, the benchmark."""
import json

import pytest
import torch

from hbi_repro.banzhaf import (banzhaf_interaction, coalition_value, random_game, PredictionHeader, HEADERS,
                               BanzhafEstimator, train_estimator, bench_banzhaf, bench_banzhaf_cli, _peak_memory)

torch.set_num_threads(1)
F64 = torch.float64


def gen(seed):
    return torch.Generator().manual_seed(seed)


def cells(game):
    return game["t_mask"][:, :, None] & game["v_mask"][:, None, :]


def rel_err(x, ref, cell=None):
    d, r = (x - ref).abs(), ref.abs()
    if cell is not None: d, r = d[cell], r[cell]
    return (d.max() / r.max()).item()


@pytest.mark.parametrize("seed,B,T,V,std", [(0, 6, 6, 5, 1.0), (1, 6, 6, 5, 6.0), (2, 4, 9, 4, 6.0), (3, 5, 3, 8, 3.0),
                                            (4, 8, 4, 4, 0.0), (5, 4, 1, 6, 1.0), (6, 4, 7, 1, 6.0)])
def test_exact_equals_enumerate(seed, B, T, V, std):
    game = random_game(B, T, V, generator=gen(seed), weight_std=std, dtype=F64)
    ref = banzhaf_interaction(**game, method="enumerate")
    out = banzhaf_interaction(**game, method="exact")
    assert rel_err(out, ref) <= 1e-6
    # entrywise too, where the reference is not tiny
    big = ref.abs() > 1e-3 * ref.abs().max()
    assert ((out - ref).abs()[big] / ref.abs()[big]).max() <= 1e-6


def test_exact_very_extreme_weights():
    # weight spread of ~±40 nats: the quadrature range grows with -log(min e)
    game = random_game(4, 7, 5, generator=gen(7), weight_std=15.0, dtype=F64)
    ref = banzhaf_interaction(**game, method="enumerate")
    assert rel_err(banzhaf_interaction(**game), ref) <= 1e-6


def test_exact_float32_and_degenerate_rows():
    game = random_game(3, 5, 4, generator=gen(8))
    game["t_mask"][0] = False                  # an example without words: all zeros
    game["v_mask"][1, 1:] = False              # a single frame
    out = banzhaf_interaction(**game)
    assert out.dtype == torch.float32 and (out[0] == 0).all() and torch.isfinite(out).all()
    ref = banzhaf_interaction(**{k: (x.double() if x.is_floating_point() else x) for k, x in game.items()}, method="enumerate")
    assert rel_err(out.double(), ref) < 1e-5
    # the example with a single frame, alone
    g1 = {k: x[1:2] for k, x in game.items()}
    assert torch.allclose(banzhaf_interaction(**g1, method="enumerate").float(), banzhaf_interaction(**g1), atol=1e-6)


def test_exact_large_sizes_run_and_are_finite():
    game = random_game(16, 64, 64, generator=gen(9), weight_std=3.0)
    out = banzhaf_interaction(**game)
    assert out.shape == (16, 64, 64) and torch.isfinite(out).all()


def test_sampled_converges_like_inverse_sqrt_n():
    game = random_game(8, 8, 6, generator=gen(10), dtype=F64)
    ex = banzhaf_interaction(**game)
    c = cells(game)
    err = {}
    for n in (64, 1024, 16384):
        outs = [banzhaf_interaction(**game, method="sampled", num_samples=n, generator=gen(100 * n + k)) for k in range(3)]
        err[n] = sum(((o - ex).abs()[c].mean() for o in outs)).item() / 3
    # ×16 samples -> error ÷ 4
    assert 2.5 < err[64] / err[1024] < 6.5, err
    assert 2.5 < err[1024] / err[16384] < 6.5, err


def test_sampled_matches_loop_and_is_reproducible():
    game = random_game(4, 5, 4, generator=gen(11), dtype=F64)
    ex = banzhaf_interaction(**game)
    s1 = banzhaf_interaction(**game, method="sampled", num_samples=3000, generator=gen(1))
    s2 = banzhaf_interaction(**game, method="sampled", num_samples=3000, generator=gen(1))
    assert torch.equal(s1, s2)
    lp = banzhaf_interaction(**game, method="loop", num_samples=600, generator=gen(2))
    assert rel_err(s1, ex) < 0.08 and rel_err(lp, ex) < 0.15


def test_padding_invariance_exact_and_enumerate():
    game = random_game(5, 5, 4, generator=gen(12), dtype=F64)
    g = gen(13)
    B, T, V, T2, V2 = 5, 5, 4, 8, 7
    big = dict(sim=torch.randn(B, T2, V2, generator=g, dtype=F64), t_weight=20 * torch.randn(B, T2, generator=g, dtype=F64),
               v_weight=20 * torch.randn(B, V2, generator=g, dtype=F64),
               t_mask=torch.cat([game["t_mask"], torch.zeros(B, T2 - T, dtype=torch.bool)], 1),
               v_mask=torch.cat([game["v_mask"], torch.zeros(B, V2 - V, dtype=torch.bool)], 1))
    big["sim"][:, :T, :V] = game["sim"]
    big["sim"][:, T:, :] = float("nan")      # even NaN in padded cells is ignored
    big["t_weight"][:, :T] = game["t_weight"]; big["v_weight"][:, :V] = game["v_weight"]
    for method in ("exact", "enumerate"):
        small_I, big_I = banzhaf_interaction(**game, method=method), banzhaf_interaction(**big, method=method)
        assert torch.allclose(big_I[:, :T, :V], small_I, atol=1e-13, rtol=0)
        assert (big_I[:, T:] == 0).all() and (big_I[:, :, V:] == 0).all()
    s = banzhaf_interaction(**big, method="sampled", num_samples=2000, generator=gen(3))
    assert torch.isfinite(s).all() and rel_err(s[:, :T, :V], banzhaf_interaction(**game)) < 0.1


def test_symmetries():
    game = random_game(4, 6, 5, generator=gen(14), pad=False, dtype=F64)
    I = banzhaf_interaction(**game)
    # swapping the roles of words and frames (and their weights) transposes I
    sw = banzhaf_interaction(game["sim"].transpose(1, 2), game["v_mask"], game["t_mask"], game["v_weight"], game["t_weight"])
    assert torch.allclose(sw.transpose(1, 2), I, atol=1e-13)
    # relabelling the players permutes I
    pt, pv = torch.randperm(6, generator=gen(1)), torch.randperm(5, generator=gen(2))
    Ip = banzhaf_interaction(game["sim"][:, pt][:, :, pv], game["t_mask"], game["v_mask"], game["t_weight"][:, pt], game["v_weight"][:, pv])
    assert torch.allclose(Ip, I[:, pt][:, :, pv], atol=1e-13)
    # adding a constant to the raw weights changes nothing (softmax shift invariance)
    assert torch.allclose(banzhaf_interaction(game["sim"], game["t_mask"], game["v_mask"], game["t_weight"] + 7, game["v_weight"] - 3), I, atol=1e-13)


def test_one_word_two_frames_by_hand():
    a = torch.tensor([[[0.5, 0.3]]], dtype=F64)             # 1 word, 2 frames
    m = torch.ones(1, 1, dtype=torch.bool); mv = torch.ones(1, 2, dtype=torch.bool)
    w = torch.zeros(1, 1, dtype=F64); wv = torch.tensor([[0.0, 0.0]], dtype=F64)
    I = banzhaf_interaction(a, m, mv, w, wv, method="enumerate")
    # pair (t0, v0): C ⊆ {v1}: C=∅: φ({t0,v0}) = .5 ; C={v1}: φ({t0,v0,v1}) + φ({v1}) - φ({t0,v1}) - φ({v0,v1})
    #   = ½(.5 + ½(.5+.3)) + 0 - .3 - 0 = .45 - .3 = .15 ; mean = .325
    assert abs(I[0, 0, 0].item() - 0.325) < 1e-12
    assert torch.allclose(banzhaf_interaction(a, m, mv, w, wv), I, atol=1e-12)


def test_official_variant_enumerate_vs_sampled_and_scale():
    game = random_game(3, 5, 4, generator=gen(15), dtype=F64)
    enum = banzhaf_interaction(**game, method="enumerate", variant="official")
    samp = banzhaf_interaction(**game, method="sampled", variant="official", num_samples=6000, generator=gen(4))
    assert rel_err(samp, enum) < 0.04
    # ×1000 scale: halving the similarities halves the estimand (φ is positively homogeneous)
    half = banzhaf_interaction(**dict(game, sim=game["sim"] / 2), method="enumerate", variant="official")
    assert torch.allclose(half * 2, enum, atol=1e-9)
    assert (enum[~cells(game)] == 0).all()
    # the official estimand differs from the paper's
    paper = banzhaf_interaction(**game)
    assert rel_err(enum / 1000, paper, cells(game)) > 0.05


def test_official_variant_single_pair_by_hand():
    # 1 word × 2 frames, equal weights, L = 1000·a. Pair (t0, v0); the other player is v1 (C_t = ∅ always).
    a = torch.tensor([[[0.5, 0.3]]], dtype=F64)
    m = torch.ones(1, 1, dtype=torch.bool); mv = torch.ones(1, 2, dtype=torch.bool)
    w = torch.zeros(1, 1, dtype=F64); wv = torch.zeros(1, 2, dtype=F64)
    I = banzhaf_interaction(a, m, mv, w, wv, method="enumerate", variant="official") / 1000
    # C=∅: v4=0, v1: matrix [[.5, 0]], weights t0:1, v0:1 -> ½(.5 + .5) = .5 ; v2: row t0, no columns -> 0; v3: no rows -> 0
    # C={v1}: v4: no rows -> 0 (maxima of an all-zero matrix);
    #   v1: matrix [[.5, 0]] (v1 column zero since t0 ∉ C_t); word weight 1 -> t2v .5; frame weights softmax([softmax_C(0)=1, 0])
    #       = [e^0, e^1]/(1+e) for [v0, v1] -> v2t = (1/(1+e))·.5 + (e/(1+e))·0
    #   v2: rows {t0}, cols {v1}: matrix [[0, .3]], t2v = .3, v2t = 1·.3 -> .3 ; v3: no rows -> 0
    e = torch.e
    c1 = 0.5 * (0.5 + 0.5 / (1 + e)) - 0.3
    assert abs(I[0, 0, 0].item() - (0.5 + c1) / 2) < 1e-12


@pytest.mark.parametrize("variant", HEADERS)
def test_headers_padding_invariance_and_grad(variant):
    g = gen(16)
    game = random_game(3, 6, 5, generator=g, dtype=F64)
    T2, V2 = 10, 8
    pad = dict(sim=torch.randn(3, T2, V2, generator=g, dtype=F64),
               t_mask=torch.cat([game["t_mask"], torch.zeros(3, T2 - 6, dtype=torch.bool)], 1),
               v_mask=torch.cat([game["v_mask"], torch.zeros(3, V2 - 5, dtype=torch.bool)], 1))
    pad["sim"][:, :6, :5] = game["sim"]
    torch.manual_seed(0)
    head = PredictionHeader(variant, planes=8).double()
    R0 = head(game["sim"], game["t_mask"], game["v_mask"])
    R1 = head(pad["sim"], pad["t_mask"], pad["v_mask"])
    assert torch.allclose(R1[:, :6, :5], R0, atol=1e-12) and (R1[~(pad["t_mask"][:, :, None] & pad["v_mask"][:, None])] == 0).all()
    if variant != "none":
        sim = game["sim"].clone().requires_grad_()
        head(sim, game["t_mask"], game["v_mask"]).sum().backward()
        assert sim.grad is not None and torch.isfinite(sim.grad).all()
        assert (sim.grad[~cells(game)] == 0).all()       # padded inputs have no influence


def test_header_official_compat_and_state_dict():
    torch.manual_seed(0)
    off = PredictionHeader("cnn_sa", planes=8, compat="official")
    sd = {k: v.clone() for k, v in off.state_dict().items()}
    sd.update({"bn.weight": torch.ones(8), "bn.bias": torch.zeros(8)})   # the official module's unused BatchNorm
    missing, unexpected = PredictionHeader("cnn_sa", planes=8).load_state_dict(sd, strict=False)
    assert not missing and set(unexpected) == {"bn.weight", "bn.bias"}
    x = torch.randn(2, 4, 3); tm = torch.ones(2, 4, dtype=torch.bool); vm = torch.ones(2, 3, dtype=torch.bool)
    # without padding, official compat differs from paper only by the 1/√P scale
    paper = PredictionHeader("cnn_sa", planes=8); paper.load_state_dict(off.state_dict())
    assert not torch.allclose(paper(x, tm, vm), off(x, tm, vm))
    with pytest.raises(ValueError, match="variant"): PredictionHeader("transformer")
    with pytest.raises(ValueError, match="t_mask"): paper(x, tm[:, :2], vm)


def test_estimator_beats_constant_on_heldout():
    data = random_game(200, 8, 6, generator=gen(17))
    model, rep = train_estimator(*data.values(), steps=200, planes=16, generator=gen(18))
    assert isinstance(model, BanzhafEstimator)
    assert rep["heldout_mse_vs_exact"] < 0.6 * rep["heldout_mse_constant"], rep
    assert rep["heldout_corr"] > 0.6, rep
    # sampled targets also train (noisier)
    _, rep_s = train_estimator(*data.values(), target="sampled", num_samples=50, steps=100, planes=8, generator=gen(19))
    assert rep_s["heldout_mse_vs_exact"] < rep_s["heldout_mse_constant"], rep_s


def test_estimator_on_the_official_estimand(monkeypatch):
    "target='official' fits the official estimand (sampled: it has no polynomial form) and reports against those targets."
    import hbi_repro.banzhaf as bz
    calls, real = [], bz.banzhaf_interaction
    def spy(*a, **k):
        calls.append((k.get("method", "exact"), k.get("variant", "paper"))); return real(*a, **k)
    monkeypatch.setattr(bz, "banzhaf_interaction", spy)
    data = random_game(40, 5, 4, generator=gen(21))
    model, rep = bz.train_estimator(*data.values(), target="official", num_samples=20, steps=5, planes=4, generator=gen(22))
    assert calls == [("sampled", "official")]                     # no Eq. 1 target, exact or sampled
    assert rep["reference"] == "official sampled targets" and "heldout_mse_vs_official_targets" in rep
    assert "heldout_mse_vs_exact" not in rep
    off = real(*data.values(), method="sampled", num_samples=20, generator=gen(22), variant="official")
    assert model.out_scale > 100 * real(*data.values()).std()    # it learnt the ×1000 scale of the official targets
    assert off.abs().max() > 100 * real(*data.values()).abs().max()
    with pytest.raises(ValueError, match="target must be one of"): bz.train_estimator(*data.values(), target="Official")


def test_bad_inputs():
    game = random_game(2, 4, 3, generator=gen(20))
    with pytest.raises(ValueError, match="method"): banzhaf_interaction(**game, method="magic")
    with pytest.raises(ValueError, match="v_weight"): banzhaf_interaction(**dict(game, v_weight=game["v_weight"][:, :2]))
    with pytest.raises(ValueError, match=r"\(B, T, V\)"): banzhaf_interaction(**dict(game, sim=game["sim"][0]))
    with pytest.raises(ValueError, match="num_samples"): banzhaf_interaction(**game, method="sampled", num_samples=0)
    with pytest.raises(ValueError, match="limited to 16"):
        banzhaf_interaction(**random_game(1, 9, 9, generator=gen(0), pad=False), method="enumerate")


def test_coalition_value_broadcast_and_rule_c():
    game = random_game(2, 4, 3, generator=gen(21), pad=False, dtype=F64)
    sim, tw, vw = game["sim"], game["t_weight"], game["v_weight"]
    tk = torch.ones(5, 2, 4, dtype=torch.bool); vk = torch.ones(5, 2, 3, dtype=torch.bool)
    tk[1] = False; vk[2] = False                             # no word / no frame -> 0
    phi = coalition_value(sim, tk, vk, tw, vw)
    assert phi.shape == (5, 2) and (phi[1] == 0).all() and (phi[2] == 0).all()
    # full coalition = Eq. 12
    full = 0.5 * ((tw.softmax(-1) * sim.amax(-1)).sum(-1) + (vw.softmax(-1) * sim.amax(-2)).sum(-1))
    assert torch.allclose(phi[0], full)


def test_bench_quick_and_memory_probe(tmp_path, monkeypatch):
    out = tmp_path / "b.json"
    res = bench_banzhaf(str(out), sizes=((2, 6, 4),), repeats=1, small=(2, 4, 3), memory=False, loop_max_iters=100)
    rec = json.loads(out.read_text())
    assert rec["metrics"]["sizes"]["B2_T6_V4"]["exact_s"] > 0 and "provenance" in rec
    assert res["small_vs_enumerate"]["std6"]["exact_rel_err"] < 1e-6
    bench_banzhaf_cli.__wrapped__(out=str(tmp_path / "q.json"), quick=True)
    assert "B2_T6_V4" in json.loads((tmp_path / "q.json").read_text())["metrics"]["sizes"]
    monkeypatch.chdir(tmp_path)                               # --quick without --out writes nothing (not the committed JSON)
    bench_banzhaf_cli.__wrapped__(quick=True)
    assert not (tmp_path / "results").exists()
    mem = _peak_memory("exact", 4, 8, 8, 10, 1)
    assert mem["peak_rss_mib"] > 0 and mem["increase_mib"] >= 0
