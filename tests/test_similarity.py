"""Eq. 12 (similarity) and Eqs. 2-5 (reconstruction) beyond the notebook checks: larger random cases, bounded memory."""
import json, subprocess, sys
from pathlib import Path
import torch
import torch.nn.functional as F
from hbi_repro.similarity import token_interaction, token_interaction_loop, matched_interaction, WeightHead
from hbi_repro.reconstruct import Reconstruction, pairwise_similarity_materialised

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parent.parent


def _tokens(A, B, T, V, D, seed, p=0.6):
    g = torch.Generator().manual_seed(seed)
    t, v = torch.randn(A, T, D, generator=g), torch.randn(B, V, D, generator=g)
    tm, vm = torch.rand(A, T, generator=g) < p, torch.rand(B, V, generator=g) < p
    tm[:, 0] = True; vm[:, -1] = True
    return g, t, tm, v, vm


def test_token_interaction_matches_loop_and_chunks():
    g, t, tm, v, vm = _tokens(13, 11, 9, 7, 16, 0)
    tw, vw = 3 * torch.randn(13, 9, generator=g), 3 * torch.randn(11, 7, generator=g)
    ref = token_interaction_loop(t, tm, v, vm, tw, vw)
    for chunk in (None, 1, 4, 100):
        torch.testing.assert_close(token_interaction(t, tm, v, vm, tw, vw, chunk=chunk), ref, atol=1e-6, rtol=0)
    # return_tokens agrees with a direct computation, zeros at padding, for shuffled (span-sorted) blocks
    S, sim = token_interaction(t, tm, v, vm, tw, vw, chunk=4, return_tokens=True)
    direct = torch.einsum("atd,bvd->abtv", F.normalize(t, dim=-1), F.normalize(v, dim=-1)) * (tm[:, None, :, None] & vm[None, :, None, :])
    torch.testing.assert_close(sim, direct, atol=1e-6, rtol=0)
    # official compat: the same loop with padded cells set to 0 and included in the max
    So = token_interaction(t, tm, v, vm, tw, vw, compat="official")
    sw, vww = torch.softmax(tw.masked_fill(~tm, -1e30), -1), torch.softmax(vw.masked_fill(~vm, -1e30), -1)
    ref_o = 0.5 * ((sw[:, None] * direct.amax(-1)).sum(-1) + (vww[None] * direct.amax(-2)).sum(-1))
    torch.testing.assert_close(So, ref_o, atol=1e-6, rtol=0)


def test_padding_invariance_and_empty_rows():
    g, t, tm, v, vm = _tokens(5, 6, 7, 4, 8, 1)
    tw, vw = torch.randn(5, 7, generator=g), torch.randn(6, 4, generator=g)
    S = token_interaction(t, tm, v, vm, tw, vw)
    t2 = torch.cat([t, 10 * torch.randn(5, 3, 8, generator=g)], 1); tm2 = F.pad(tm, (0, 3))
    tw2 = torch.cat([tw, 100 * torch.ones(5, 3)], 1)
    torch.testing.assert_close(token_interaction(t2, tm2, v, vm, tw2, vw), S, atol=1e-6, rtol=0)
    tm[2] = False  # a text with no real token scores 0 against everything
    S_empty = token_interaction(t, tm, v, vm, tw, vw)
    assert torch.isfinite(S_empty).all() and (S_empty[2] == 0).all()


def test_matched_fp16_finite():
    g, t, tm, v, vm = _tokens(4, 4, 6, 5, 8, 2)
    S, sim = matched_interaction(t.half(), tm, v.half(), vm, torch.randn(4, 6, generator=g).half(), torch.randn(4, 5, generator=g).half())
    assert torch.isfinite(S).all() and torch.isfinite(sim).all()


def test_reconstruction_expanded_equals_materialised_float32():
    g, t, tm, v, vm = _tokens(9, 10, 8, 6, 32, 3)
    tc = torch.randn(9, 32, generator=g)
    torch.manual_seed(0)
    rec, th, vh = Reconstruction(32, 24), WeightHead(32, 40, init_std=0.2), WeightHead(32, 40, init_std=0.2)
    with torch.no_grad():
        for m in (rec.gamma_mlp, rec.delta_mlp):
            m.fc1.weight.normal_(std=0.2, generator=g); m.fc2.weight.normal_(std=0.3, generator=g)
        ref = pairwise_similarity_materialised(rec, t, tm, tc, v, vm, th, vh)
        for chunk in (None, 1, 3, 64):
            got = rec.pairwise_similarity(t, tm, tc, v, vm, th, vh, chunk=chunk)
            assert (got - ref).abs().max() < 1e-5, (chunk, (got - ref).abs().max())
        # padding invariance of the pairwise scores
        t2 = torch.cat([7 * torch.randn(9, 2, 32, generator=g), t], 1); tm2 = F.pad(tm, (2, 0))
        assert (rec.pairwise_similarity(t2, tm2, tc, v, vm, th, vh) - ref).abs().max() < 1e-5


def test_gallery_memory_bounded():
    """1000 × 1000 gallery, T=32, V=12, D=512: the peak stays far below the 1.5 GB of the full cosine tensor."""
    code = ("import resource, time, torch; torch.set_num_threads(1); from hbi_repro.similarity import token_interaction\n"
            "g = torch.Generator().manual_seed(0); A = B = 1000; T, V, D = 32, 12, 512\n"
            "t, v = torch.randn(A, T, D, generator=g), torch.randn(B, V, D, generator=g)\n"
            "tm, vm = torch.ones(A, T, dtype=torch.bool), torch.ones(B, V, dtype=torch.bool)\n"
            "r0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; t0 = time.perf_counter()\n"
            "S = token_interaction(t, tm, v, vm, torch.zeros(A, T), torch.zeros(B, V))\n"
            "print(time.perf_counter() - t0, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - r0) / 1024)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    seconds, grew_mb = float(out[0]), float(out[1])
    assert grew_mb < 600, grew_mb


def _plain_token_interaction(t, tm, v, vm, tw, vw, chunk):
    "Eq. 12 the plain way (the kit's code before the layout change): span-sorted, trimmed blocks, cosines in the"
    "product's own (a, T, b, V) layout reduced by `wti_from_sim`."
    from hbi_repro.similarity import wti_from_sim, masked_softmax, span_order
    A, T, D = t.shape; B, V, _ = v.shape
    tw, vw = masked_softmax(tw, tm), masked_softmax(vw, vm)
    (ia, st), (ib, sv) = span_order(tm), span_order(vm)
    tn, tm, tw, vn, vm, vw = F.normalize(t, dim=-1)[ia], tm[ia], tw[ia], F.normalize(v, dim=-1)[ib], vm[ib], vw[ib]
    S = torch.empty(A, B)
    for a0 in range(0, A, chunk):
        a1, Ta = min(A, a0 + chunk), max(1, int(st[a0]))
        for b0 in range(0, B, chunk):
            b1, Vb = min(B, b0 + chunk), max(1, int(sv[b0]))
            s = (tn[a0:a1, :Ta].reshape(-1, D) @ vn[b0:b1, :Vb].reshape(-1, D).T).view(a1 - a0, Ta, b1 - b0, Vb).transpose(1, 2)
            S[ia[a0:a1, None], ib[None, b0:b1]] = wti_from_sim(s, tm[a0:a1, None, :Ta], vm[None, b0:b1, :Vb],
                                                                tw[a0:a1, None, :Ta], vw[None, b0:b1, :Vb])
    return S


def test_token_interaction_bit_identical_to_plain_layout():
    "The (a, T, V, b) reduction layout changes no bit of S or of any gradient (training batches, float32, several"
    "block sizes, fully padded texts and videos)."
    for B, T, V, seed, chunk in ((32, 32, 12, 0, 36), (32, 16, 6, 1, 36), (32, 4, 2, 2, 36), (20, 9, 5, 3, 7), (32, 32, 12, 4, 5)):
        g = torch.Generator().manual_seed(seed)
        t, v = torch.randn(B, T, 128, generator=g), torch.randn(B, V, 128, generator=g)
        tm = torch.arange(T) < torch.randint(1, T + 1, (B,), generator=g)[:, None]
        vm = torch.arange(V) < torch.randint(1, V + 1, (B,), generator=g)[:, None]
        tm[3] = False; vm[5] = False                                  # a text and a video with no real token
        tw, vw = torch.randn(B, T, generator=g), torch.randn(B, V, generator=g)
        outs = []
        for fn in (lambda *x: token_interaction(*x, chunk=chunk), lambda *x: _plain_token_interaction(*x, chunk=chunk)):
            xs = [x.clone().requires_grad_() for x in (t, v, tw, vw)]
            S = fn(xs[0], tm, xs[1], vm, xs[2], xs[3])
            (S * torch.linspace(-1, 1, S.numel()).view_as(S)).sum().backward()
            outs.append([S.detach()] + [x.grad for x in xs])
        for got, want in zip(*outs):
            assert torch.equal(got, want), (B, T, V, chunk, (got - want).abs().max().item())


def test_token_interaction_under_bf16_autocast():
    "Under autocast the cosines are bf16: padding is filled with bf16's own minimum (an fp32 one overflows), and S stays close to fp32."
    g, t, tm, v, vm = _tokens(9, 8, 7, 5, 16, 4)
    tw, vw = torch.randn(9, 7, generator=g), torch.randn(8, 5, generator=g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        S = token_interaction(t, tm, v, vm, tw, vw, chunk=3)
    torch.testing.assert_close(S.float(), token_interaction(t, tm, v, vm, tw, vw), atol=3e-2, rtol=0)
