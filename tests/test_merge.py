"""Tests of hbi_repro.merge: DPC-KNN against a loop-by-loop reference of Eqs. 9-10, blob recovery, padding, tiny N,
and the TokenMerge module (padding invariance, masked surplus clusters, gradients, stacking at 6 and 1 frames)."""
import math

import pytest
import torch

from hbi_repro.merge import TokenMerge, dpc_knn

torch.set_num_threads(1)


def reference_dpc(x, mask, K, k):
    "Eqs. 9-10 for one sample with Python loops (valid tokens only, self excluded, ties -> lower index)."
    idx = [i for i in range(len(mask)) if mask[i]]
    C = x.shape[-1]
    d = {(i, j): float(((x[i] - x[j]) ** 2).sum()) / C for i in idx for j in idx}
    rho = {}
    for i in idx:
        others = sorted(d[i, j] for j in idx if j != i)[:k]
        rho[i] = math.exp(-sum(others) / len(others)) if others else 1.0
    xi = {}
    for i in idx:
        denser = [j for j in idx if rho[j] > rho[i] or (rho[j] == rho[i] and j < i)]
        xi[i] = min(d[i, j] for j in denser) if denser else max(d[i, j] for j in idx)
    ranked = sorted(idx, key=lambda i: (-rho[i] * xi[i], i))
    centers = sorted(ranked[:K])  # numbered in temporal order
    assign = [-1] * len(mask)
    for i in idx:
        assign[i] = min(range(len(centers)), key=lambda c: (d[i, centers[c]], c))
    for c, i in enumerate(centers): assign[i] = c
    return assign, [c < len(centers) for c in range(K)]


@pytest.mark.parametrize("seed", range(6))
def test_dpc_knn_matches_reference(seed):
    g = torch.Generator().manual_seed(seed)
    B, N, C, K = 4, 9, 5, 3
    x = torch.randn(B, N, C, generator=g, dtype=torch.float64)
    mask = torch.rand(B, N, generator=g) > 0.3
    mask[0] = True; mask[1, 2:] = False  # one full sample, one with 2 valid tokens (< K)
    for k in (1, 3, 20):
        assign, cmask = dpc_knn(x, mask, K, k)
        for b in range(B):
            ra, rc = reference_dpc(x[b], mask[b].tolist(), K, k)
            assert assign[b].tolist() == ra, (seed, k, b)
            assert cmask[b].tolist() == rc


@pytest.mark.parametrize("seed", range(5))
def test_blobs_recovered(seed):
    g = torch.Generator().manual_seed(seed)
    sizes = [4, 7, 5]
    labels = torch.cat([torch.full((s,), i) for i, s in enumerate(sizes)])
    centers = torch.tensor([[0., 0.], [8., 1.], [2., 9.]])
    pts = centers[labels] + 0.4 * torch.randn(len(labels), 2, generator=g)
    perm = torch.randperm(len(labels), generator=g)
    pts, labels = pts[perm], labels[perm]
    # interleave padding at random positions (pads placed right at a blob center: still never centers/members)
    N = len(labels) + 5
    pad_pos = torch.randperm(N, generator=g)[:5].sort().values
    mask = torch.ones(N, dtype=torch.bool); mask[pad_pos] = False
    x = torch.zeros(N, 2); x[mask] = pts; x[~mask] = centers[0]
    assign, cmask = dpc_knn(x[None], mask[None], num_clusters=3, k=3)
    a = assign[0][mask]
    assert torch.equal(a[:, None] == a[None, :], labels[:, None] == labels[None, :])
    assert (assign[0][~mask] == -1).all() and cmask.all()
    assert set(a.tolist()) == {0, 1, 2}


def test_padding_never_center_and_surplus_masked():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 8, 4, generator=g)
    x[:, 4:] = 100.0  # padded tokens far away: isolated points would have the largest ξ if they counted
    mask = torch.zeros(3, 8, dtype=torch.bool)
    mask[0, :4] = True; mask[1, :1] = True  # sample 2 has no valid token at all
    assign, cmask = dpc_knn(x, mask, num_clusters=6, k=3)
    assert cmask.tolist() == [[True] * 4 + [False] * 2, [True] + [False] * 5, [False] * 6]
    assert assign[0, :4].tolist() == [0, 1, 2, 3] and (assign[~mask] == -1).all()
    assert assign[1, 0] == 0


def test_padding_position_invariance_and_determinism():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 7, 6, generator=g); mask = torch.ones(2, 7, dtype=torch.bool)
    a0, c0 = dpc_knn(x, mask, 3, 3)
    # insert padded tokens in the middle and at the end
    xp = torch.cat([x[:, :3], torch.randn(2, 2, 6, generator=g), x[:, 3:], torch.zeros(2, 3, 6)], 1)
    mp = torch.cat([mask[:, :3], torch.zeros(2, 2, dtype=torch.bool), mask[:, 3:], torch.zeros(2, 3, dtype=torch.bool)], 1)
    a1, c1 = dpc_knn(xp, mp, 3, 3)
    assert torch.equal(torch.cat([a1[:, :3], a1[:, 5:9]], 1), a0) and (a1[:, 3:5] == -1).all() and torch.equal(c1, c0)
    assert torch.equal(dpc_knn(x, mask, 3, 3)[0], a0)


def test_ties_duplicate_tokens():
    x = torch.zeros(1, 5, 3)  # all identical: ρ ties everywhere
    assign, cmask = dpc_knn(x, torch.ones(1, 5, dtype=torch.bool), 2, 3)
    assert cmask.all() and assign.min() >= 0
    assert assign[0, 0] == 0  # token 0 is the first in the order, hence a center with cluster id 0


def test_generator_noise_is_reproducible():
    x = torch.zeros(1, 5, 3); m = torch.ones(1, 5, dtype=torch.bool)
    a = dpc_knn(x, m, 2, 3, generator=torch.Generator().manual_seed(3))[0]
    b = dpc_knn(x, m, 2, 3, generator=torch.Generator().manual_seed(3))[0]
    assert torch.equal(a, b)


def test_bad_inputs():
    with pytest.raises(ValueError, match="num_clusters"):
        dpc_knn(torch.randn(1, 3, 2), torch.ones(1, 3, dtype=torch.bool), 0, 3)
    with pytest.raises(ValueError, match="x must be"):
        dpc_knn(torch.randn(3, 2), torch.ones(1, 3, dtype=torch.bool), 2, 3)
    with pytest.raises(ValueError, match="divisible"):
        TokenMerge(10, 2, heads=4)


def _merge(dim=32, K=3, compat="paper", seed=0):
    torch.manual_seed(seed)
    return TokenMerge(dim, K, k=3, heads=4, compat=compat).eval()


def test_token_merge_padding_invariance():
    g = torch.Generator().manual_seed(0)
    tm = _merge()
    x = torch.randn(3, 7, 32, generator=g)
    mask = torch.tensor([[True] * 7, [True] * 4 + [False] * 3, [True] * 2 + [False] * 5])
    out, om, oa = tm(x, mask)
    # overwrite the padded positions with garbage and append 5 more padded tokens
    xg = x.clone(); xg[~mask] = 1e3 * torch.randn(int((~mask).sum()), 32, generator=g)
    xp = torch.cat([xg, torch.randn(3, 5, 32, generator=g)], 1)
    mp = torch.cat([mask, torch.zeros(3, 5, dtype=torch.bool)], 1)
    out2, om2, oa2 = tm(xp, mp)
    torch.testing.assert_close(out2, out, atol=1e-5, rtol=1e-5)
    assert torch.equal(om2, om) and torch.equal(oa2[:, :7], oa) and (oa2[:, 7:] == -1).all()
    assert om.tolist() == [[True] * 3, [True] * 3, [True, True, False]]
    assert out[2, 2].abs().sum() == 0


def test_official_conv_leaks_padding():
    g = torch.Generator().manual_seed(0)
    tm = _merge(compat="official")
    x = torch.randn(1, 6, 32, generator=g); mask = torch.tensor([[True] * 4 + [False] * 2])
    x2 = x.clone(); x2[0, 4] += 5.0
    out, om, _ = tm(x, mask)
    out2, _, _ = tm(x2, mask)
    assert om.all()
    assert not torch.allclose(out, out2)  # the padded token at position 4 leaks into token 3 through the conv


@pytest.mark.parametrize("frames", [1, 2, 6, 12])
def test_stack_two_merges_any_length(frames):
    "Paper cluster numbers Nv^a=6, Nv^o=2 on 1, 2, 6 and 12 frames (the official code crashes below 9)."
    g = torch.Generator().manual_seed(frames)
    m1, m2 = TokenMerge(32, 6, heads=4), TokenMerge(32, 2, heads=4)
    x = torch.randn(2, frames, 32, generator=g)
    mask = torch.ones(2, frames, dtype=torch.bool); mask[1, max(1, frames // 2):] = False
    a, am, aa = m1(x, mask)
    e, em, ea = m2(a, am)
    assert a.shape == (2, 6, 32) and e.shape == (2, 2, 32)
    assert am.sum(1).tolist() == [min(6, frames), min(6, max(1, frames // 2))]
    assert em[:, 0].all() and torch.isfinite(e).all()
    assert (a[~am] == 0).all() and (e[~em] == 0).all()
    (e.square().sum() + a.square().sum()).backward()
    for mod in (m1, m2):
        for name in ("conv.conv.weight", "mlp_w.weight", "attn.q.weight", "attn.kv.weight", "attn.proj.weight"):
            grad = mod.get_parameter(name).grad
            assert grad is not None and torch.isfinite(grad).all(), name
    # MLP_w receives a gradient whenever some cluster has >= 2 members or the attention sees >= 2 keys
    if frames >= 2: assert m1.mlp_w.weight.grad.abs().sum() > 0 and m1.conv.conv.weight.grad.abs().sum() > 0


def test_low_precision_runs():
    tm = _merge()
    x = torch.randn(2, 6, 32).to(torch.bfloat16); mask = torch.ones(2, 6, dtype=torch.bool)
    out, om, _ = tm.to(torch.bfloat16)(x, mask)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()
