"""The C++ kernels of `04_reconstruct` at the edges: for training (`train.kernels=compiled`) the one-time check in any
autograd mode, NaN inputs, saved tensors handed back with other strides, arguments the kernels must refuse; for
inference (`eval.kernels=compiled`) NaN inputs."""
import torch
import pytest
import hbi_repro.reconstruct as R

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _kernels(monkeypatch):
    monkeypatch.delenv("HBI_REPRO_FUSED_KERNEL", raising=False)
    if R._fused_lib() is None:
        pytest.skip("the C++ kernels cannot be built here (tests/test_model.py says why)")


def _cos_inputs(a, b, T, V, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=dtype)
    ins = [r(a, T, b, V).transpose(1, 2), r(a, b, T), r(a, b, V), r(a, b), r(a, b, V).sigmoid(), r(a, b, T).sigmoid(),
           r(a, b, T).abs() + .5, r(a, b, V).abs() + .5, r(a, b, T).softmax(-1), r(a, b, V).softmax(-1)]
    return ins, torch.rand(a, T, generator=g) < .8, torch.rand(b, V, generator=g) < .8


@pytest.mark.parametrize("mode", ["no_grad", "inference_mode"])
def test_check_passes_whatever_mode_it_first_runs_in(monkeypatch, mode):
    "The one-time check needs gradients; called first under no_grad or inference_mode it must still pass (it used to fail and switch the kernels off for the process)."
    monkeypatch.setattr(R, "_FUSED_OK", {})
    with (torch.no_grad() if mode == "no_grad" else torch.inference_mode()):
        assert R.train_kernels_available()


def test_nan_propagates_as_in_pytorch():
    "A NaN input gives NaN where the eager code gives NaN (the ReLU and both maxima keep it), not a finite number or -inf."
    a, b, N, H = 2, 3, 4, 5
    g = torch.Generator().manual_seed(1)
    P, Y = torch.randn(a, N, H, generator=g), torch.randn(a, b, H, generator=g)
    f = torch.rand(a, b, N, generator=g); c = 1 - f
    b1, w2, b2 = torch.randn(H, generator=g), torch.randn(H, generator=g), torch.zeros(1)
    P[1, 2, 3] = float("nan")
    got, want = R._PairMLP.apply(P, Y, f, c, b1, w2, b2, 0), R._pair_mlp_reference(P, Y, f, c, b1, w2, b2, 0)
    assert torch.equal(got.isnan(), want.isnan()) and got.isnan().any()
    torch.testing.assert_close(got[~got.isnan()], want[~want.isnan()], atol=1e-5, rtol=1e-5)
    ins, tm, vm = _cos_inputs(3, 2, 5, 4)
    tm[:] = True; vm[:] = True
    ins[0] = ins[0].clone(); ins[0][1, 0, 2, 3] = float("nan")      # one word-frame product of pair (1, 0)
    got, want = R._cos_max(*ins, tm, vm), R._cos_wti(*ins, tm, vm)
    assert torch.equal(got.isnan(), want.isnan()) and bool(got[1, 0].isnan())
    torch.testing.assert_close(got[~got.isnan()], want[~want.isnan()], atol=1e-5, rtol=1e-5)


def test_backward_with_saved_tensors_handed_back_in_another_layout():
    "saved_tensors_hooks may return saved tensors with other strides (same values): the gradients must not change."
    ins, tm, vm = _cos_inputs(3, 4, 5, 6, seed=2)
    ins = [x.requires_grad_() for x in ins]
    dS = torch.randn(3, 4, generator=torch.Generator().manual_seed(3))
    want = torch.autograd.grad(R._cos_wti(*ins, tm, vm), ins, dS)
    def unpack(x):   # same values, transposed storage: strides differ from what was saved
        return x.mT.contiguous().mT if x.dim() >= 2 else x
    with torch.autograd.graph.saved_tensors_hooks(lambda x: x, unpack):
        got = torch.autograd.grad(R._cos_max(*ins, tm, vm), ins, dS)
    for x, y in zip(got, want): torch.testing.assert_close(x, y, atol=1e-5, rtol=1e-4)
    P = torch.randn(2, 4, 5, requires_grad=True); Y = torch.randn(2, 3, 5, requires_grad=True)
    f = torch.rand(2, 3, 4, requires_grad=True); c = torch.rand(2, 3, 4, requires_grad=True)
    prm = [torch.randn(5, requires_grad=True), torch.randn(5, requires_grad=True), torch.zeros(1, requires_grad=True)]
    ins2 = [P, Y, f, c, *prm]
    want = torch.autograd.grad(R._pair_mlp_reference(*ins2, 0).sum(), ins2)
    with torch.autograd.graph.saved_tensors_hooks(lambda x: x, unpack):
        got = torch.autograd.grad(R._PairMLP.apply(*ins2, 0).sum(), ins2)
    for x, y in zip(got, want): torch.testing.assert_close(x, y, atol=1e-5, rtol=1e-4)


def test_arguments_the_kernels_refuse():
    "Broadcast (under-sized) per-pair terms and other dtypes are clear errors, never an out-of-bounds read."
    ins, tm, vm = _cos_inputs(3, 4, 5, 6)
    nr = ins[7][:1]                                                   # (1, b, V): broadcasts in _cos_wti, not here
    with pytest.raises(ValueError, match="per-pair terms"):
        R._cos_max(*ins[:7], nr, *ins[8:], tm, vm)
    with pytest.raises(ValueError, match="masks"):
        R._cos_max(*ins, tm[:, :4], vm)
    with pytest.raises(TypeError, match="float32"):
        R._cos_max(*[x.double() for x in ins], tm, vm)
    P, Y, f = torch.randn(2, 4, 5), torch.randn(2, 3, 5), torch.rand(2, 3, 4)
    with pytest.raises(ValueError, match="pair MLP"):
        R._PairMLP.apply(P, Y, f, 1 - f, torch.zeros(4), torch.zeros(5), torch.zeros(1), 0)   # b1 of the wrong width
    with pytest.raises(TypeError, match="float32"):
        R._PairMLP.apply(P.double(), Y.double(), f.double(), 1 - f.double(), torch.zeros(5, dtype=torch.float64),
                         torch.zeros(5, dtype=torch.float64), torch.zeros(1), 0)


def test_inference_kernel_propagates_nan():
    "NaN reaches the fused inference kernel's scores wherever it reaches the eager path's (its maxima, clamps and ReLUs used to drop it)."
    from hbi_repro.similarity import WeightHead
    if not R.fused_kernel_available(): pytest.skip("the fused inference kernel is unavailable here")
    g = torch.Generator().manual_seed(4)
    t, v, tc = torch.randn(5, 7, 8, generator=g), torch.randn(19, 4, 8, generator=g), torch.randn(5, 8, generator=g)
    tm, vm = torch.ones(5, 7, dtype=torch.bool), torch.ones(19, 4, dtype=torch.bool)
    torch.manual_seed(0)
    rec, th, vh = R.Reconstruction(8, 6), WeightHead(8, 7), WeightHead(8, 7)
    t[2, 3, 1] = float("nan")
    with torch.no_grad():
        want = R._pairwise(rec, t, tm, tc, v, vm, th, vh, None, False, impl="eager")
        got = R._pairwise(rec, t, tm, tc, v, vm, th, vh, None, False, impl="fused")
    assert want[2].isnan().all() and torch.equal(got.isnan(), want.isnan())
    torch.testing.assert_close(got[~got.isnan()], want[~want.isnan()], atol=2e-5, rtol=0)
    t[2, 3, 1] = 0.
    with torch.no_grad():
        th.fc1.bias[3] = float("nan")            # one hidden unit of the word-weight head: only a ReLU sees it
        want = R._pairwise(rec, t, tm, tc, v, vm, th, vh, None, False, impl="eager")
        got = R._pairwise(rec, t, tm, tc, v, vm, th, vh, None, False, impl="fused")
    assert want.isnan().all() and got.isnan().all()
