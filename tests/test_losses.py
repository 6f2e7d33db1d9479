"""Losses beyond the notebook checks: the 2-process gather, padding invariance of the Banzhaf KL, gradients."""
import os, socket
import torch
import torch.multiprocessing as mp
from hbi_repro.losses import gather_with_grad, banzhaf_kl, distill_kl, info_nce, LogitScale

torch.set_num_threads(1)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]


def _worker(rank, world, port, q):
    import torch.distributed as dist
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        x = torch.full((2, 3), float(rank), requires_grad=True)
        m = torch.tensor([True, rank == 1])
        y, mg = gather_with_grad(x), gather_with_grad(m)
        (y * torch.arange(1., 5.)[:, None]).sum().backward()
        q.put((rank, y.detach().tolist(), mg.tolist(), x.grad.tolist()))
    finally:
        dist.destroy_process_group()


def test_gather_with_grad_two_processes():
    ctx = mp.get_context("spawn"); q = ctx.Queue(); port = _free_port()
    procs = [ctx.Process(target=_worker, args=(r, 2, port, q)) for r in range(2)]
    for p in procs: p.start()
    res = sorted(q.get(timeout=120) for _ in procs)
    for p in procs: p.join(timeout=60)
    for rank, y, mg, grad in res:
        assert y == [[0.] * 3] * 2 + [[1.] * 3] * 2                     # rank order
        assert mg == [True, False, True, True]                          # bool survives
        # every rank computed the same loss sum_i i*y_i, so the slice's gradient is summed over the 2 ranks
        w = [1., 2.] if rank == 0 else [3., 4.]
        assert grad == [[2 * w[0]] * 3, [2 * w[1]] * 3]


def test_banzhaf_kl_padding_and_grad():
    g = torch.Generator().manual_seed(0)
    B, T, V = 6, 9, 5
    R, I = torch.randn(B, T, V, generator=g), torch.randn(B, T, V, generator=g)
    tm, vm = torch.rand(B, T, generator=g) < 0.6, torch.rand(B, V, generator=g) < 0.6
    tm[:, 1] = True; vm[:, 0] = True
    base = banzhaf_kl(R, I, tm, vm)
    # append padded words and frames with arbitrary values
    R2 = torch.cat([R, 30 * torch.randn(B, 2, V, generator=g)], 1); I2 = torch.cat([I, -30 * torch.randn(B, 2, V, generator=g)], 1)
    R2 = torch.cat([R2, torch.randn(B, T + 2, 3, generator=g)], 2); I2 = torch.cat([I2, torch.randn(B, T + 2, 3, generator=g)], 2)
    tm2 = torch.cat([tm, torch.zeros(B, 2, dtype=torch.bool)], 1); vm2 = torch.cat([vm, torch.zeros(B, 3, dtype=torch.bool)], 1)
    torch.testing.assert_close(banzhaf_kl(R2, I2, tm2, vm2), base)
    # a pair with no real frame is skipped, not NaN
    vm3 = vm.clone(); vm3[0] = False
    assert torch.isfinite(banzhaf_kl(R, I, tm, vm3))
    Rg, Ig = R.clone().requires_grad_(), I.clone().requires_grad_()
    banzhaf_kl(Rg, Ig, tm, vm).backward()
    assert Ig.grad is None and torch.isfinite(Rg.grad).all()
    # fp16 inputs stay finite with masks
    assert torch.isfinite(banzhaf_kl(R.half().float(), I, tm, vm))


def test_info_nce_with_logit_scale_trains():
    ls = LogitScale(init=10., max=100.)
    S = torch.randn(8, 8, requires_grad=True)
    opt = torch.optim.SGD([S, *ls.parameters()], lr=0.5)
    first = None
    for _ in range(20):
        loss = info_nce(S, ls()); first = first if first is not None else loss.item()
        opt.zero_grad(); loss.backward(); opt.step(); ls.clamp_()
    assert loss.item() < first and ls().item() <= 100.0 + 1e-4
