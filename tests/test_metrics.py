"""Tests of hbi_repro.metrics: retrieval ranks (ties, several positives), QA accuracy, pycocoevalcap captions.

The caption tests start Java (PTB tokenizer; METEOR starts a JVM twice): about 10 s in all; skipped when `java` is missing.
"""
import math
import shutil

import numpy as np
import pytest
import torch

from hbi_repro import metrics as M
from hbi_repro.metrics import (both_directions, caption_metrics, dual_softmax, inverted_softmax, qa_accuracy,
                               retrieval_metrics)

torch.set_num_threads(1)


def approx(x):
    return pytest.approx(x, abs=1e-9)


def argsort_ranks(sim, pos):
    "Reference: 1-based position of the first positive in the row sorted by decreasing score."
    sim, pos = torch.as_tensor(sim), torch.as_tensor(pos)
    order = torch.argsort(sim, dim=1, descending=True)
    return (torch.gather(pos, 1, order).float().argmax(1) + 1).double()


def official_compute_metrics(x):
    "The CLIP4Clip / official HBI recipe (spec §4.5), restated here only to show its tie behaviour."
    sx = np.sort(-x, axis=1)
    d = np.diag(-x)[:, None]
    ind = np.where(sx - d == 0)[1]                    # one entry per equal value, not per row
    return {"ranks": ind + 1, "R@1": 100 * float(np.mean(ind < 1))}


# ---------------------------------------------------------------------------- hand-computed retrieval

# 3 videos, 2 captions each (caption i belongs to video i // 2), rows = captions, columns = videos.
S = np.array([[0.9, 0.1, 0.2],    # c0 -> v0: top of its row                           rank 1
              [0.5, 0.5, 0.1],    # c1 -> v0: v1 ties at 0.5                            pess 2 / opt 1 / exp 1.5
              [0.3, 0.8, 0.7],    # c2 -> v1: top                                       rank 1
              [0.6, 0.2, 0.4],    # c3 -> v1: v0 (0.6) and v2 (0.4) strictly above      rank 3
              [0.1, 0.2, 0.3],    # c4 -> v2: top                                       rank 1
              [0.7, 0.9, 0.7]],   # c5 -> v2: v1 (0.9) above, v0 ties at 0.7            pess 3 / opt 2 / exp 2.5
             dtype=np.float32)
VID = [0, 0, 1, 1, 2, 2]


@pytest.mark.parametrize("ties,ranks", [("pessimistic", [1, 2, 1, 3, 1, 3]),
                                        ("optimistic", [1, 1, 1, 3, 1, 2]),
                                        ("expected", [1, 1.5, 1, 3, 1, 2.5])])
def test_t2v_hand_ranks_with_ties(ties, ranks):
    r = retrieval_metrics(S, VID, ties=ties, return_ranks=True)
    assert r["ranks"].tolist() == ranks
    assert r["MnR"] == approx(sum(ranks) / 6)
    assert r["MdR"] == approx(float(np.median(ranks)))   # numpy median: mean of the two middle values
    assert r["R@5"] == approx(100) and r["n_tied"] == 2 and r["n_queries"] == 6


def test_t2v_hand_recall():
    # pessimistic: ranks [1,2,1,3,1,3] -> top-1 for 3 of 6 queries = 50 %, top-5 for all = 100 %.
    r = retrieval_metrics(S, VID)
    assert r["R@1"] == approx(50) and r["R@10"] == approx(100) and r["R@50"] == approx(100)
    assert r["Rsum"] == approx(250)
    # expected: c1 is top-1 with probability 1/2 (a coin flip between v0 and v1), c5 never (0.9 is above): 3.5/6.
    assert retrieval_metrics(S, VID, ties="expected")["R@1"] == approx(100 * 3.5 / 6)


def test_v2t_any_positive_in_top_k():
    # Video queries over the 6 captions (columns of S). A video counts as retrieved at the rank of its best caption:
    #   v0: captions c0 (0.9), c1 (0.5); 0.9 is the column max                       -> rank 1
    #   v1: captions c2 (0.8), c3 (0.2); c5 (0.9) strictly above 0.8                 -> rank 2
    #   v2: captions c4 (0.3), c5 (0.7); 0.7 is the max but c2 also has 0.7 (a tie)   -> pess 2, opt 1
    b = both_directions(S, VID, return_ranks=True)
    assert b["v2t"]["ranks"].tolist() == [1, 2, 2]
    assert b["v2t"]["R@1"] == approx(100 / 3) and b["v2t"]["n_gallery"] == 6
    assert both_directions(S, VID, ties="optimistic", return_ranks=True)["v2t"]["ranks"].tolist() == [1, 2, 1]
    # the same positives given as a bool matrix and as a list of lists give the same numbers
    dense = np.zeros((6, 3), bool); dense[np.arange(6), VID] = True
    lists = [[v] for v in VID]
    for p in (dense, lists, torch.tensor(VID)):
        assert both_directions(S, p) == both_directions(S, VID)


def test_several_positives_tied_with_each_other():
    # One query, positives {0, 1}, both scoring 0.5; negatives: 0.7 (above), 0.5 and 0.5 (tied), 0.1.
    s = [[0.5, 0.5, 0.7, 0.5, 0.5, 0.1]]
    p = [[0, 1]]
    assert retrieval_metrics(s, p, return_ranks=True)["ranks"].tolist() == [4]        # 1 + 1 above + 2 tied
    assert retrieval_metrics(s, p, ties="optimistic", return_ranks=True)["ranks"].tolist() == [2]
    # Random order of the 4 tied items (2 negatives, 2 positives): negatives before the first positive average
    # e/(m+1) = 2/3, so the expected rank is 1 + 1 + 2/3.
    r = retrieval_metrics(s, p, ties="expected", ks=(2, 3), return_ranks=True)
    assert r["ranks"][0] == approx(2 + 2 / 3)
    # top-2: one free slot, a positive with probability 2/4; top-3: two slots, miss only if both are negatives
    # (2/4 * 1/3 = 1/6), so 5/6.
    assert r["R@2"] == approx(50) and r["R@3"] == approx(100 * 5 / 6)


def test_expected_policy_matches_random_tie_breaking():
    # Monte Carlo check of the closed form: break ties by tiny random noise, average the argsort metrics.
    gen = torch.Generator().manual_seed(1)
    s = torch.randint(0, 3, (12, 10), generator=gen).float()          # values in {0,1,2}: many ties
    pos = torch.rand(12, 10, generator=gen) < 0.2
    pos[torch.arange(12), torch.arange(12) % 10] = True
    exact = retrieval_metrics(s, pos, ties="expected", ks=(1, 2, 3), return_ranks=True)
    trials = 4000
    noise = torch.rand(trials, 12, 10, generator=gen) * 1e-3           # smaller than the gap between values
    ranks = torch.stack([argsort_ranks(s + n, pos) for n in noise])     # (trials, 12)
    assert np.allclose(ranks.mean(0).numpy(), exact["ranks"], atol=0.08)
    for k in (1, 2, 3):
        assert 100 * (ranks <= k).double().mean().item() == pytest.approx(exact[f"R@{k}"], abs=1.0)


# ---------------------------------------------------------------------------- agreement without ties

@pytest.mark.parametrize("nq,ng,chunk", [(60, 60, 1024), (83, 47, 10), (200, 31, 64)])
def test_equals_argsort_without_ties(nq, ng, chunk):
    gen = torch.Generator().manual_seed(nq)
    s = torch.randn(nq, ng, generator=gen, dtype=torch.float64)
    pos = torch.rand(nq, ng, generator=gen) < 0.1
    pos[torch.arange(nq), torch.randint(0, ng, (nq,), generator=gen)] = True
    ref = argsort_ranks(s, pos)
    for ties in M.TIES:
        r = retrieval_metrics(s.numpy(), pos.numpy(), ties=ties, chunk=chunk, return_ranks=True)
        assert np.array_equal(r["ranks"], ref.numpy()) and r["n_tied"] == 0
        for k in (1, 5, 10, 50):
            assert r[f"R@{k}"] == approx(100 * (ref <= k).double().mean().item())
        assert r["MdR"] == approx(float(np.median(ref.numpy()))) and r["MnR"] == approx(ref.mean().item())
    # the other direction uses the transpose of both the scores and the positives (every gallery item has one)
    if pos.any(0).all():
        v2t = both_directions(s, pos, chunk=chunk, return_ranks=True)["v2t"]
        assert np.array_equal(v2t["ranks"], argsort_ranks(s.T, pos.T).numpy())


def test_diagonal_default_matches_official_when_no_ties():
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(40, 40, generator=gen).numpy()
    assert retrieval_metrics(x, return_ranks=True)["ranks"].tolist() == official_compute_metrics(x)["ranks"].tolist()


# ---------------------------------------------------------------------------- the all-equal 4x4 matrix

def test_all_equal_4x4_each_policy_and_the_official_duplication():
    e = np.zeros((4, 4), np.float32)
    # pessimistic: the 3 negatives of each row rank above the positive -> every rank is 4, R@1 0, R@5 100.
    p = retrieval_metrics(e, return_ranks=True)
    assert p["ranks"].tolist() == [4] * 4 and p["R@1"] == 0 and p["R@5"] == approx(100) and p["MdR"] == 4
    # optimistic: nothing strictly above -> rank 1 everywhere, R@1 100 (a constant model looks perfect).
    o = retrieval_metrics(e, ties="optimistic", return_ranks=True)
    assert o["ranks"].tolist() == [1] * 4 and o["R@1"] == approx(100)
    # expected: uniform position among the 4 tied items -> mean rank 2.5, R@1 = 1/4 (chance level).
    x = retrieval_metrics(e, ties="expected", return_ranks=True)
    assert x["ranks"].tolist() == [2.5] * 4 and x["R@1"] == approx(25) and x["R@5"] == approx(100)
    assert p["n_tied"] == o["n_tied"] == x["n_tied"] == 4
    # The official recipe matches every equal entry of every row: 4 rows x 4 equal values = 16 "ranks"
    # (1,2,3,4 per row), so R@1 = 4/16 = 25 only by accident of the inflated denominator, and MdR = 2.5 over 16.
    off = official_compute_metrics(e)
    assert len(off["ranks"]) == 16 and off["R@1"] == 25


def test_half_precision_ties_are_kept():
    # 0.30004 and 0.3 collapse to the same fp16 value; widening to fp32 must keep them equal (rank 2, pessimistic).
    s = torch.tensor([[0.3, 0.30004, 0.1], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float16)
    r = retrieval_metrics(s, return_ranks=True)
    assert r["ranks"].tolist() == [2, 1, 1] and r["n_tied"] == 1


# ---------------------------------------------------------------------------- post-processing

def test_postprocessing_keys_are_separate_and_match_definitions():
    gen = torch.Generator().manual_seed(5)
    s = torch.randn(30, 30, generator=gen) * 0.2
    r = retrieval_metrics(s, postprocess=("dsl", "is"), temperature=0.05, chunk=7)
    plain = retrieval_metrics(s)
    assert {k: r[k] for k in plain} == plain                         # plain numbers unchanged
    col = torch.softmax(s.double() / 0.05, dim=0)                    # prior over queries (down each column)
    dsl = retrieval_metrics(s.double() * col)
    isf = retrieval_metrics(torch.log(col))
    for k in ("R@1", "R@5", "R@10", "MdR", "MnR", "Rsum"):
        assert r[f"dsl/{k}"] == approx(dsl[k]) and r[f"is/{k}"] == approx(isf[k])
    assert torch.allclose(dual_softmax(s, 0.05), s.double() * col)
    assert torch.allclose(inverted_softmax(s, 0.05), torch.log(col))


# ---------------------------------------------------------------------------- errors

@pytest.mark.parametrize("call,msg", [
    (lambda: retrieval_metrics(np.zeros((2, 3))), "square"),
    (lambda: retrieval_metrics(np.array([[np.nan, 0.0], [0.0, 1.0]])), "NaN"),
    (lambda: retrieval_metrics(np.zeros((2, 3)), [[0], []]), "no positive"),
    (lambda: retrieval_metrics(np.zeros((2, 3)), [[0], [3]]), r"\[0, 3\)"),
    (lambda: retrieval_metrics(np.zeros((2, 2)), ties="random"), "ties"),
    (lambda: retrieval_metrics(np.zeros(4)), "2-D"),
    (lambda: retrieval_metrics(np.eye(2), postprocess=("qbnorm",)), "post-processing"),
    (lambda: both_directions(np.zeros((2, 3)), [[0], [0]]), "nobody's positive"),
    (lambda: qa_accuracy([1, 2], [1]), "match"),
])
def test_clear_errors(call, msg):
    with pytest.raises(ValueError, match=msg):
        call()


# ---------------------------------------------------------------------------- QA

def test_qa_accuracy_hand_case():
    # 6 questions; q2 and q5 have answers outside the 4-word vocabulary (target -1).
    pred = [0, 3, 2, 1, 1, 0]
    target = [0, 3, -1, 2, 1, -1]
    types = ["what", "who", "what", "how", "what", "who"]
    r = qa_accuracy(pred, target, answer_types=types)
    # right: q0, q1, q4 -> 3 of 6 with OOV counted wrong; 3 of the 4 in-vocabulary questions.
    assert r["acc"] == approx(50) and r["acc_in_vocab"] == approx(75)
    assert (r["n_total"], r["n_in_vocab"], r["n_oov"]) == (6, 4, 2)
    # per type (OOV counted wrong): what = q0 ok, q2 oov, q4 ok -> 2/3; who = q1 ok, q5 oov -> 1/2; how = q3 wrong.
    assert r["acc/what"] == approx(200 / 3) and r["acc/who"] == approx(50) and r["acc/how"] == 0
    assert (r["n/what"], r["n/who"], r["n/how"]) == (3, 2, 1)


def test_qa_accuracy_logits_and_explicit_vocab_mask():
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0]])    # argmax 0, 1, 0
    # Loaders that label OOV answers with len(vocab) instead of -1 pass in_vocab explicitly.
    r = qa_accuracy(logits, [0, 1, 2], in_vocab=[True, True, False])
    assert r["acc"] == approx(200 / 3) and r["acc_in_vocab"] == approx(100) and r["n_oov"] == 1


# ---------------------------------------------------------------------------- captions (Java)

CAPTION_SETS = [
    ({"v1": "a man is playing a guitar.", "v2": "a cat sits on a mat"},
     {"v1": ["A man plays the guitar.", "someone is playing guitar", "a man is playing a guitar on stage"],
      "v2": ["a cat is sitting on the mat", "the cat sits on a mat.", "a kitten rests on a rug"]}),
    ({0: "people are dancing", 1: "a woman is cooking food in a kitchen", 2: "a car drives down the road", 3: "x"},
     {0: ["a group of people dance", "people dancing at a party"],
      1: ["a woman cooks in the kitchen", "someone is preparing food", "a lady is cooking"],
      2: ["a red car is driving on a highway", "a car moves along the street"],
      3: ["a dog runs in the park", "the dog is running"]}),
]
needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="pycocoevalcap needs Java")


def direct_pycocoevalcap(preds, refs, meteor=True):
    "Scores from a direct pycocoevalcap call, the way COCOEvalCap does it (tokenise each side, then score)."
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.cider.cider import Cider
    tok = PTBTokenizer()
    gts = tok.tokenize({k: [{"caption": c} for c in refs[k]] for k in refs})
    res = tok.tokenize({k: [{"caption": preds[k]}] for k in refs})
    b = Bleu(4).compute_score(gts, res, verbose=0)[0]
    out = {"BLEU-1": b[0], "BLEU-2": b[1], "BLEU-3": b[2], "BLEU-4": b[3],
           "ROUGE-L": Rouge().compute_score(gts, res)[0], "CIDEr": Cider().compute_score(gts, res)[0]}
    if meteor:
        m = Meteor()
        out["METEOR"] = m.compute_score(gts, res)[0]
        del m                                                   # its __del__ stops the JVM
    return out


@needs_java
@pytest.mark.parametrize("i,meteor", [(0, True), (1, False)])   # METEOR (two ~5 s JVM starts) on the first set only
def test_caption_metrics_equal_direct_pycocoevalcap(i, meteor):
    preds, refs = CAPTION_SETS[i]
    ours = caption_metrics(preds, refs, meteor=meteor)
    ref = direct_pycocoevalcap(preds, refs, meteor=meteor)
    assert ours["n_videos"] == len(refs) and ("METEOR" in ours) == meteor
    for k, v in ref.items():
        assert ours[k] == pytest.approx(100 * v, rel=1e-12, abs=1e-12), k   # ×100 scale


@needs_java
def test_caption_metrics_without_meteor_and_input_checks():
    preds, refs = CAPTION_SETS[0]
    r = caption_metrics(preds, refs, meteor=False)
    assert "METEOR" not in r and set(M.CAPTION_KEYS) - {"METEOR"} <= set(r)
    with pytest.raises(ValueError, match="same ids"):
        caption_metrics({"v1": "a"}, refs, meteor=False)
    with pytest.raises(ValueError, match="non-empty list"):
        caption_metrics({"v1": "a"}, {"v1": "a man"}, meteor=False)


def test_caption_metrics_without_java_says_so(monkeypatch):
    monkeypatch.setattr(M.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="needs Java"):
        caption_metrics(*CAPTION_SETS[0])
