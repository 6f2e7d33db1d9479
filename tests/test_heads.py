"""Tests of hbi_repro.heads: QA head (padding, gradients, level combination), caption decoder (causality, video
padding, loss ignores padding, beam search vs exhaustive search, beam 1 == greedy, open_clip ids, overfitting)."""
import itertools, math

import pytest
import torch

from hbi_repro.heads import (AttentionPool, CaptionDecoder, QAHead, caption_loss, combine_level_logits,
                             masked_mean)

torch.set_num_threads(1)


def _pad(x, mask, n, g, fill=30.0):
    "Garbage at padded positions plus n extra padded tokens."
    x = x.masked_fill(~mask[..., None], fill)
    x = torch.cat([x, torch.randn(x.shape[0], n, x.shape[2], generator=g)], 1)
    return x, torch.cat([mask, torch.zeros(mask.shape[0], n, dtype=torch.bool)], 1)


def test_qa_head_padding_and_gradients():
    g = torch.Generator().manual_seed(0); torch.manual_seed(0)
    qa = QAHead(24, 11, hidden=64, proj_dim=32)
    t, v = torch.randn(3, 6, 24, generator=g), torch.randn(3, 5, 24, generator=g)
    tm = torch.tensor([[True] * 6, [True] * 3 + [False] * 3, [True] + [False] * 5])
    vm = torch.tensor([[True] * 5, [True] * 2 + [False] * 3, [True] + [False] * 4])
    qa.eval()
    out = qa(t, tm, v, vm)
    assert out.shape == (3, 11)
    torch.testing.assert_close(qa(*_pad(t, tm, 4, g), *_pad(v, vm, 2, g)), out, atol=1e-5, rtol=1e-5)
    qa.train()
    loss = torch.nn.functional.cross_entropy(qa(t, tm, v, vm), torch.tensor([1, 2, 3]))
    loss.backward()
    for name, p in qa.named_parameters():
        if name.endswith("score.2.bias"): continue  # a softmax is shift-invariant: the last score bias gets no gradient
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    with pytest.raises(ValueError, match="do not match"):
        qa(t, tm[:, :4], v, vm)


def test_attention_pool_is_convex_combination_of_valid_tokens():
    g = torch.Generator().manual_seed(1)
    pool = AttentionPool(4)
    x = torch.randn(2, 3, 4, generator=g); m = torch.tensor([[True, False, False], [True, True, False]])
    out = pool(x, m)
    torch.testing.assert_close(out[0], x[0, 0])  # one valid token: the pool is that token
    torch.testing.assert_close(masked_mean(x, m)[1], x[1, :2].mean(0))


def test_combine_level_logits():
    a, b, c = torch.randn(2, 5), torch.randn(2, 5), torch.randn(2, 5)
    out = combine_level_logits({"entity": a, "action": b, "event": c}, {"event": 0.2, "entity": 0.4, "action": 0.4})
    torch.testing.assert_close(out, 0.4 * a + 0.4 * b + 0.2 * c)
    torch.testing.assert_close(combine_level_logits([a, b, c]), (a + b + c) / 3)
    with pytest.raises(ValueError, match="no entry"):
        combine_level_logits({"entity": a, "action": b}, {"entity": 1.0})
    with pytest.raises(ValueError, match="weights for"):
        combine_level_logits([a, b], [1.0])


def _decoder(vocab=12, dim=16, max_len=8, seed=0, **kw):
    torch.manual_seed(seed)
    return CaptionDecoder(dim, vocab, max_len, heads=4, **kw).eval()


@pytest.mark.parametrize("k", range(5))
def test_decoder_causality(k):
    g = torch.Generator().manual_seed(k)
    dec = _decoder()
    vid, vm = torch.randn(2, 3, 16, generator=g), torch.ones(2, 3, dtype=torch.bool)
    cap = torch.randint(1, 10, (2, 6), generator=g); cap[:, 0] = 10
    cap2 = cap.clone(); cap2[:, k + 1:] = torch.randint(1, 10, (2, 5 - k), generator=g)
    l1, l2 = dec(vid, vm, cap), dec(vid, vm, cap2)
    torch.testing.assert_close(l1[:, :k + 1], l2[:, :k + 1])


def test_decoder_video_padding_invariance():
    g = torch.Generator().manual_seed(2)
    dec = _decoder()
    vid, vm = torch.randn(2, 4, 16, generator=g), torch.tensor([[True] * 4, [True, True, False, False]])
    cap = torch.tensor([[10, 1, 2, 11], [10, 3, 11, 0]])
    torch.testing.assert_close(dec(*_pad(vid, vm, 3, g), cap, cap != 0), dec(vid, vm, cap, cap != 0), atol=1e-5, rtol=1e-5)
    assert dec.greedy_decode(*_pad(vid, vm, 3, g), max_len=5) == dec.greedy_decode(vid, vm, max_len=5)
    with pytest.raises(ValueError, match="at least one valid video token"):
        dec(vid, torch.zeros(2, 4, dtype=torch.bool), cap)


def test_caption_loss_ignores_padding_targets():
    g = torch.Generator().manual_seed(3)
    ids = torch.tensor([[10, 1, 2, 11, 0, 0], [10, 4, 11, 0, 0, 0]]); cm = ids != 0
    logits = torch.randn(2, 6, 12, generator=g)
    base = caption_loss(logits, ids, cm)
    changed = logits.clone(); changed[0, 3:] = 100 * torch.randn(3, 12, generator=g); changed[1, 2:] = 0.0
    torch.testing.assert_close(caption_loss(changed, ids, cm), base)
    # hand value: mean over the 5 valid targets of -log_softmax
    lp = logits.log_softmax(-1)
    ref = -(lp[0, 0, 1] + lp[0, 1, 2] + lp[0, 2, 11] + lp[1, 0, 4] + lp[1, 1, 11]) / 5
    torch.testing.assert_close(base, ref)


@pytest.mark.parametrize("seed", range(3))
def test_beam_one_is_greedy(seed):
    g = torch.Generator().manual_seed(seed)
    dec = _decoder(vocab=20, seed=seed)
    vid, vm = torch.randn(4, 5, 16, generator=g), torch.rand(4, 5, generator=g) > 0.3
    vm[:, 0] = True
    assert dec.beam_search(vid, vm, beam_size=1, max_len=7, length_penalty=1.0) == dec.greedy_decode(vid, vm, max_len=7)


@pytest.mark.parametrize("alpha", [0.0, 0.6, 2.0])
def test_beam_search_exhaustive(alpha):
    "With beams >= all live hypotheses, beam search is exact: compare with brute-force enumeration."
    g = torch.Generator().manual_seed(4)
    dec = _decoder(vocab=5, max_len=4, pad_id=0, bos_id=3, eos_id=4)
    vid, vm = torch.randn(2, 3, 16, generator=g), torch.ones(2, 3, dtype=torch.bool)
    allowed, L = [1, 2, 4], 3
    hyps = set()
    for seq in itertools.product(allowed, repeat=L):
        seq = list(seq)
        hyps.add(tuple(seq[:seq.index(4) + 1]) if 4 in seq else tuple(seq))
    best = []
    for b in range(2):
        scored = []
        for h in hyps:
            ids = torch.tensor([[3, *h]])
            lp = dec(vid[b:b + 1], vm[b:b + 1], ids)[0].log_softmax(-1)
            s = sum(lp[i, t].item() for i, t in enumerate(h))
            scored.append((s / ((5 + len(h)) / 6) ** alpha, [t for t in h if t != 4]))
        best.append(max(scored)[1])
    assert dec.beam_search(vid, vm, beam_size=27, max_len=L, length_penalty=alpha) == best


def _reference_beam(dec, vid, vm, k, max_len, alpha):
    """The beam search 07_heads describes, written out per sample and per beam, without its early stop: it always runs
    to max_len, so agreeing with it shows the stop never changes the result."""
    pen = lambda n: ((5 + n) / 6) ** alpha
    out = []
    for b in range(vid.shape[0]):
        live, fin = [(0.0, [])], []
        for step in range(max_len):
            cands = []
            for s, ids in live:
                with torch.no_grad():
                    lp = dec._next_logprobs(vid[b:b + 1], vm[b:b + 1], torch.tensor([[dec.bos_id, *ids]])).view(-1)
                cands += [(s + lp[t].item(), ids, t) for t in range(dec.vocab_size) if lp[t] > float("-inf")]
            cands.sort(key=lambda c: -c[0])                                  # stable: ties by beam, then token id
            new = []
            for r, (s, ids, t) in enumerate(cands[:2 * k]):
                if t == dec.eos_id:
                    if r < k: fin.append((s / pen(step + 1), ids))       # finished: set aside, takes no live place
                    continue
                new.append((s, ids + [t]))
                if len(new) == k: break
            fin, live = sorted(fin, key=lambda f: -f[0])[:k], new
            if not live: break
        else: fin += [(s / pen(max_len), ids) for s, ids in live]
        out.append(max(fin, key=lambda f: f[0])[1] if fin else [])
    return out


def _markov_decoder(tables):
    """A decoder whose next-token log-probabilities for sample b are tables[b][last token] (a Markov language model per
    sample; the sample's index rides in its video tokens)."""
    tables = torch.as_tensor(tables)
    tables = tables[None] if tables.dim() == 2 else tables
    dec = _decoder(vocab=tables.shape[-1], max_len=8, pad_id=0, bos_id=1, eos_id=2)
    dec._next_logprobs = lambda v, m, seqs: tables[v[:, 0, 0].long(), seqs[:, -1]]
    return dec


def _samples(B):
    "Video tokens whose first value is the sample's index (read by `_markov_decoder`)."
    return torch.arange(B, dtype=torch.float)[:, None, None].expand(B, 1, 16).clone(), torch.ones(B, 1, dtype=torch.bool)


@pytest.mark.parametrize("k,alpha", [(1, 0.6), (2, 0.6), (3, 1.0), (4, 0.0), (2, -1.0), (9, 2.0)])
def test_beam_search_matches_the_written_out_algorithm(k, alpha):
    """Batches of 4 samples, each with its own random Markov language model, finishing at different steps, 10 draws; k = 9
    exceeds the 5 usable tokens. Against the reference without early stop: the stop is exact for every penalty. (The old
    search, with finished beams frozen in their places, differed on 1 of 60 single-sample cases.)"""
    vid, vm = _samples(4)
    for seed in range(10):
        logits = torch.randn(4, 7, 7, generator=torch.Generator().manual_seed(seed)) * 2
        logits[..., 2] += torch.tensor([-1.0, 0.0, 1.0, 2.5])[:, None]     # EOS from unlikely to likely, per sample
        tables = logits.log_softmax(-1); tables[..., [0, 1]] = float("-inf")
        dec = _markov_decoder(tables)
        for max_len in (1, 5):
            assert dec.beam_search(vid, vm, beam_size=k, max_len=max_len, length_penalty=alpha) == \
                _reference_beam(dec, vid, vm, k, max_len, alpha), (seed, max_len)


def test_beam_search_breaks_ties_by_beam_then_token():
    """Equal scores rank by beam, then token id (a stable sort), not in `topk`'s open order: with every continuation
    equally likely the search agrees with the reference, whatever the batch."""
    uniform = torch.zeros(6, 6); uniform[:, [0, 1]] = float("-inf"); uniform = uniform.log_softmax(-1)
    vid, vm = _samples(3)
    dec = _markov_decoder(uniform[None].expand(3, 6, 6))
    for k, alpha in ((2, -1.0), (3, 0.0), (2, 1.0)):
        assert dec.beam_search(vid, vm, beam_size=k, max_len=3, length_penalty=alpha) == _reference_beam(dec, vid, vm, k, 3, alpha)
    from hbi_repro.heads import _best
    x = torch.tensor([[0., 1, 1, 0, 1, 1, 1, 0, 1]])
    top, idx = _best(x[:, None], 3)
    assert idx.tolist() == [[1, 2, 4]] and top.tolist() == [[1., 1., 1.]]    # torch's topk gave [4, 8, 6] here


def test_a_finished_beam_does_not_take_a_live_place():
    """Vocabulary {pad, bos, eos, a, b}; P(eos), P(a), P(b) = .4, .35, .25 after BOS, P(eos | b) = .99. With 2 beams and
    α = 3, the best of all hypotheses of up to 2 tokens is [b, eos]: it needs b, ranked third after BOS, to stay live
    next to a while [eos] is finished. Frozen finished beams (the old search) kept [eos] and [a] only, and returned []."""
    table = {1: [0, 0, .4, .35, .25], 3: [0, 0, .3, .6, .1], 4: [0, 0, .99, .005, .005]}   # next-token probabilities by last token
    dec = _markov_decoder(torch.tensor([[.2] * 5, table[1], [.2] * 5, table[3], table[4]]).log())   # rows 0, 2: after pad, EOS (unused)
    vid, vm = _samples(1)
    norm = lambda ids: math.log(math.prod(table[p][t] for p, t in zip([1, *ids], ids))) / ((5 + len(ids)) / 6) ** 3
    hyps = [[2], [3, 2], [4, 2], *([x, y] for x in (3, 4) for y in (3, 4))]   # every hypothesis of at most 2 tokens
    assert max(hyps, key=norm) == [4, 2]                                     # by hand: −1.396 / (7/6)³ = −0.879
    assert dec.beam_search(vid, vm, beam_size=2, max_len=2, length_penalty=3.0) == [[4]]


def test_beam_search_waits_for_a_longer_hypothesis_the_penalty_favours():
    """P(eos), P(a) = .52, .48 after BOS and P(a | a) = .999, α = 3, 4 tokens: [eos] scores log .52 = −0.654 and [a, a, a, a]
    (log .48 + 3 log .999) / (9/6)³ = −0.218, found only if the search does not stop at [eos] (a bound at the current
    length, −0.734, would)."""
    rows = [[.2] * 5, [0, 0, .52, .48, 0], [.2] * 5, [0, 0, .001, .999, 0], [.2] * 5]
    dec = _markov_decoder(torch.tensor(rows).log())
    vid, vm = _samples(1)
    assert dec.beam_search(vid, vm, beam_size=1, max_len=4, length_penalty=3.0) == [[3, 3, 3, 3]]
    assert dec.greedy_decode(vid, vm, max_len=4) == [[]]                     # greedy stops at the likelier first token


def test_open_clip_default_ids_and_stop_at_eos():
    dec = _decoder(vocab=49408, max_len=6)
    assert (dec.pad_id, dec.bos_id, dec.eos_id) == (0, 49406, 49407)
    with torch.no_grad():  # force EOS after two tokens: bias the projection towards 7, then 8, then EOS
        dec.proj.weight.zero_(); dec.proj.bias.zero_(); dec.proj.bias[49407] = 5.0
    vid, vm = torch.randn(1, 2, 16), torch.ones(1, 2, dtype=torch.bool)
    assert dec.greedy_decode(vid, vm) == [[]] and dec.beam_search(vid, vm, beam_size=2) == [[]]
    with pytest.raises(ValueError, match="distinct"):
        CaptionDecoder(16, 10, 8, heads=4, bos_id=0)
    with pytest.raises(ValueError, match="max_len"):
        dec.greedy_decode(vid, vm, max_len=6)


def test_decoder_gradients_and_overfit():
    g = torch.Generator().manual_seed(5); torch.manual_seed(5)
    dec = CaptionDecoder(32, 14, 10, heads=4, dropout=0.0, pad_id=0, bos_id=1, eos_id=2)
    vid, vm = torch.randn(2, 3, 32, generator=g), torch.ones(2, 3, dtype=torch.bool)
    cap = torch.tensor([[1, 5, 6, 7, 8, 2, 0], [1, 9, 10, 11, 2, 0, 0]]); cm = cap != 0
    opt = torch.optim.Adam(dec.parameters(), lr=3e-3)
    first = None
    for step in range(60):
        loss = caption_loss(dec(vid, vm, cap, cm), cap, cm)
        opt.zero_grad(); loss.backward()
        if step == 0:
            first = loss.item()
            for name, p in dec.named_parameters():
                assert p.grad is not None and p.grad.abs().sum() > 0, name
        opt.step()
    assert loss.item() < 0.05 * first
    dec.eval()
    assert dec.greedy_decode(vid, vm) == [[5, 6, 7, 8], [9, 10, 11]]
    assert dec.beam_search(vid, vm, beam_size=4) == [[5, 6, 7, 8], [9, 10, 11]]
