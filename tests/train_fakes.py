"""Fakes for tests/test_train.py: a tiny retrieval model following the trainer's protocol, paired data, and
entry points for subprocess / multi-process runs (not collected by pytest: no `test_` prefix)."""
import os, signal, sys
from pathlib import Path
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.distributed as dist

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path: sys.path.insert(0, str(ROOT))


class _GatherSum(torch.autograd.Function):
    "all_gather whose backward sums the gradient over ranks and returns this rank's slice (a reduce-scatter)."
    @staticmethod
    def forward(ctx, x):
        ctx.rank, ctx.world, ctx.n = dist.get_rank(), dist.get_world_size(), x.shape[0]
        out = [torch.empty_like(x) for _ in range(ctx.world)]
        dist.all_gather(out, x.contiguous())
        return torch.cat(out)

    @staticmethod
    def backward(ctx, g):
        g = g.contiguous().clone()
        dist.all_reduce(g)
        return g[ctx.rank * ctx.n:(ctx.rank + 1) * ctx.n]


def gather_with_grad(x, which="exact"):
    "which='exact': the local reduce-scatter-backward gather; 'project': hbi_repro.losses.gather_with_grad."
    if which == "project":
        from hbi_repro.losses import gather_with_grad as g
        return g(x)
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1: return x
    return _GatherSum.apply(x)


class FakeRetrieval(nn.Module):
    "Linear 'encoders' (the encoder params), a head, a logit scale; global InfoNCE + a local term; optional dropout."
    def __init__(self, d=6, seed=0, dropout=0.0, local_weight=0.05, gather="exact", own_rng=False):
        super().__init__()
        self.gather = gather
        # own_rng: a loss weight drawn each step from the model's own generator (as HBIModel's sampled Banzhaf target)
        self.noise = torch.Generator().manual_seed(seed + 1) if own_rng else None
        g = torch.Generator().manual_seed(seed)
        self.enc_t, self.enc_v, self.head = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.norm = nn.LayerNorm(d)
        for m in (self.enc_t, self.enc_v, self.head):
            nn.init.normal_(m.weight, std=0.5, generator=g); nn.init.normal_(m.bias, std=0.1, generator=g)
        self.logit_scale = nn.Parameter(torch.tensor(2.0))
        self.drop, self.local_weight = nn.Dropout(dropout), local_weight

    def encoder_parameters(self): return [*self.enc_t.parameters(), *self.enc_v.parameters()]
    def encode_text(self, b): return {"t": self.enc_t(b["text"])}
    def encode_video(self, b): return {"v": self.enc_v(b["video"])}
    def cache_features(self, b): return {**self.encode_text(b), **self.encode_video(b)}
    def similarity(self, t, v):
        return F.normalize(self.head(self.norm(t["t"])), dim=-1) @ F.normalize(v["v"], dim=-1).T

    def forward_from_features(self, f):
        t, v = gather_with_grad(self.drop(f["t"]), self.gather), gather_with_grad(f["v"], self.gather)
        S = self.similarity({"t": t}, {"v": v}) * self.logit_scale.exp()
        y = torch.arange(len(S), device=S.device)
        lc = (F.cross_entropy(S, y) + F.cross_entropy(S.T, y)) / 2          # global: same on every rank
        local = self.local_weight * f["v"].pow(2).mean()                      # local mean over this rank's items
        if self.noise is not None: lc = lc * (1 + torch.rand((), generator=self.noise))
        return {"loss": lc + local, "logs": {"L_C": lc.detach(), "local": local.detach(), "gamma": torch.tensor(0.5)}}

    def generators(self): return {} if self.noise is None else {"noise": self.noise}

    def forward(self, b): return self.forward_from_features({**self.encode_text(b), **self.encode_video(b)})
    def clamp_(self): self.logit_scale.clamp_(max=4.6)


def fake_pairs(n, d=6, seed=0, captions_per_video=1):
    "Items {video, text, video_id}: texts are noisy copies of their video's vector."
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(n, d, generator=g)
    return [{"video": v[i], "text": v[i] + 0.5 * torch.randn(d, generator=g), "video_id": i}
            for i in range(n) for _ in range(captions_per_video)]


def small_cfg(**changes):
    from hbi_repro.config import get_config, override
    base = {"train.epochs": 2, "train.batch_size": 8, "train.max_steps": 0, "train.lr": 1e-2, "train.encoder_lr": 5e-3,
            "train.warmup": 0.25, "train.weight_decay": 0.1, "train.eval_every": 0, "train.ckpt_every": 0,
            "eval.batch_size": 16, "data.num_workers": 0}
    return override(get_config("smoke"), {**base, **changes})


def run(run_dir, resume=False, world_data=None, device="cpu", gather="exact", **changes):
    "One fake run: 48 train pairs, 16 val, 16 test (val/test omitted when world_data says so); `_own_rng=True` in changes: see FakeRetrieval."
    from hbi_repro.train import train
    torch.set_num_threads(1)
    own_rng = changes.pop("_own_rng", False)
    cfg = small_cfg(**changes)
    kw = {"val_set": fake_pairs(16, seed=1), "test_set": fake_pairs(16, seed=2)} if world_data is None else {}
    return train(cfg, run_dir, resume=resume, train_set=fake_pairs(world_data or 48), model=FakeRetrieval(dropout=0.1 if world_data is None else 0.0, gather=gather, own_rng=own_rng),
                 device=device, **kw)


def ddp_worker(rank, world, port, run_dir, changes, gather="exact"):
    "mp.spawn target: torchrun-style env vars, then the ordinary train() (it initialises gloo itself)."
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), TQDM_DISABLE="1")
    run(run_dir, world_data=32, gather=gather, **changes)
    # Everything the test compares is on disk now. Leave without running C++ static destructors: gloo's transport
    # threads occasionally abort ("terminate called without an active exception") when a spawned worker exits.
    sys.stdout.flush(); sys.stderr.flush()
    os._exit(0)


def kill_after_checkpoints(run_dir, n, changes):
    "Run training and SIGKILL this process right after the n-th resumable checkpoint is on disk."
    import hbi_repro.train as T
    orig, count = T.save_checkpoint, [0]
    def save_then_maybe_die(path, payload):
        out = orig(path, payload); count[0] += 1
        if count[0] == n: os.kill(os.getpid(), signal.SIGKILL)
        return out
    T.save_checkpoint = save_then_maybe_die
    run(run_dir, **changes)


if __name__ == "__main__":  # python tests/train_fakes.py kill RUN_DIR N JSON_CHANGES
    import json
    os.environ["TQDM_DISABLE"] = "1"
    if sys.argv[1] == "kill": kill_after_checkpoints(sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4]))
