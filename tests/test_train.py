"""Trainer checks (CPU): schedule and parameter groups, 2-process gloo = 1 process, kill + resume is
bit-identical, same seed → same metrics, frozen-feature path, evaluation dispatch, estimator pretraining."""
import json, math, os, socket, subprocess, sys, types
from pathlib import Path
import pytest
import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_fakes import FakeRetrieval, fake_pairs, small_cfg, run, ddp_worker  # noqa: E402
from hbi_repro import train as T  # noqa: E402

torch.set_num_threads(1)
os.environ["TQDM_DISABLE"] = "1"
HERE = Path(__file__).resolve().parent


def params_of(ckpt_path):
    return T.load_checkpoint(ckpt_path)["model"]


def train_losses(run_dir):
    return [json.loads(l)["loss"] for l in open(Path(run_dir) / "log.jsonl") if json.loads(l)["kind"] == "train"]


# -- optimizer and schedule -------------------------------------------------------------------------------
def test_schedule_by_hand():
    cfg = small_cfg(**{"train.epochs": 3, "train.max_steps": 0})
    assert T.total_steps(cfg, steps_per_epoch=7) == 21
    assert T.total_steps(small_cfg(**{"train.max_steps": 5}), steps_per_epoch=7) == 5
    # total 20, warmup 0.1 → w = 2: 0.5, 1.0, then ½(1 + cos(π k / 18))
    p = nn.Parameter(torch.zeros(1)); opt = torch.optim.AdamW([p], lr=2.0)
    sched = T.build_scheduler(opt, total=20, warmup=0.1)
    lrs = []
    for _ in range(20): lrs.append(opt.param_groups[0]["lr"]); opt.step(); sched.step()
    want = [1.0, 2.0, 2.0, 1 + math.cos(math.pi / 18), 1 + math.cos(2 * math.pi / 18)]
    assert lrs[:5] == pytest.approx(want, abs=1e-12)
    assert lrs[11] == pytest.approx(1 + math.cos(math.pi * 9 / 18), abs=1e-12)  # halfway through the cosine: 1.0
    assert lrs[19] == pytest.approx(1 + math.cos(math.pi * 17 / 18), abs=1e-12)


def test_param_groups_lrs_and_decay():
    m = FakeRetrieval()
    opt = T.build_optimizer(m, small_cfg(**{"train.lr": 1e-3, "train.encoder_lr": 1e-7, "train.weight_decay": 0.2}))
    groups = {g["name"]: g for g in opt.param_groups}
    ids = lambda ps: {id(p) for p in ps}
    assert ids(groups["encoder/decay"]["params"]) == ids([m.enc_t.weight, m.enc_v.weight])
    assert ids(groups["encoder/no_decay"]["params"]) == ids([m.enc_t.bias, m.enc_v.bias])
    assert ids(groups["other/decay"]["params"]) == ids([m.head.weight])
    assert ids(groups["other/no_decay"]["params"]) == ids([m.head.bias, m.norm.weight, m.norm.bias, m.logit_scale])
    assert [groups[k]["lr"] for k in ("encoder/decay", "encoder/no_decay")] == [1e-7, 1e-7]
    assert [groups[k]["lr"] for k in ("other/decay", "other/no_decay")] == [1e-3, 1e-3]
    assert [g["weight_decay"] for g in opt.param_groups] == [0.2, 0.0, 0.2, 0.0]
    # a step moves the encoder by about encoder_lr (Adam's first step is ±lr), the head by about lr
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    m(torch.utils.data.default_collate(fake_pairs(8)))["loss"].backward(); opt.step()
    step = {n: (p.detach() - before[n]).abs().max().item() for n, p in m.named_parameters()}
    assert step["enc_t.bias"] == pytest.approx(1e-7, rel=0.1) and step["head.bias"] == pytest.approx(1e-3, rel=0.01)


# -- distributed ------------------------------------------------------------------------------------------
def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]


def ddp_vs_one(tmp_path, gather):
    import torch.multiprocessing as mp
    changes = {"train.max_steps": 3, "train.epochs": 1}
    one, two = tmp_path / "one", tmp_path / "two"
    run(one, world_data=32, **changes)
    mp.spawn(ddp_worker, args=(2, free_port(), str(two), changes, gather), nprocs=2, join=True)
    return one, two


def test_ddp_two_processes_equal_one(tmp_path):
    "2 gloo processes × 4 items = 1 process × 8 items: same logged losses and same parameters after 3 steps."
    one, two = ddp_vs_one(tmp_path, "exact")   # gather whose backward sums over ranks (reduce-scatter)
    l1, l2 = train_losses(one), train_losses(two)
    assert len(l1) == len(l2) == 3
    assert l1 == pytest.approx(l2, rel=1e-5, abs=1e-6)
    p1, p2 = params_of(one / "checkpoints/last.pt"), params_of(two / "checkpoints/last.pt")
    assert any(not torch.equal(p1[k], FakeRetrieval().state_dict()[k]) for k in p1)   # training moved something
    for k in p1: torch.testing.assert_close(p1[k], p2[k], rtol=1e-5, atol=1e-6, msg=k)
    # the all-reduced, local-mean term is logged as the global mean too
    rec = [json.loads(l) for l in open(two / "log.jsonl")][0]
    assert {"L_C", "local", "gamma", "grad_norm", "lr/encoder/decay", "data_wait_s"} <= set(rec)


def test_ddp_with_project_gather_equal_one(tmp_path):
    pytest.importorskip("hbi_repro.losses")
    one, two = ddp_vs_one(tmp_path, "project")
    assert train_losses(one) == pytest.approx(train_losses(two), rel=1e-5, abs=1e-6)
    p1, p2 = params_of(one / "checkpoints/last.pt"), params_of(two / "checkpoints/last.pt")
    for k in p1: torch.testing.assert_close(p1[k], p2[k], rtol=1e-5, atol=1e-6, msg=k)


# -- resume, determinism ------------------------------------------------------------------------------------
RESUME = {"train.ckpt_every": 4}   # 6 steps/epoch × 2 epochs; checkpoints at steps 4, 6, 8, 12; val at 6 and 12


def test_kill_and_resume_is_bit_identical(tmp_path):
    full, killed = tmp_path / "full", tmp_path / "killed"
    s_full = run(full, **RESUME)
    p = subprocess.run([sys.executable, str(HERE / "train_fakes.py"), "kill", str(killed), "3", json.dumps(RESUME)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == -9, p.stderr[-2000:]                          # really SIGKILLed
    ck = T.load_checkpoint(killed / "checkpoints/last.pt")
    assert (ck["state"]["step"], ck["state"]["epoch"], ck["state"]["batch_in_epoch"]) == (8, 1, 2)  # mid-epoch
    s_res = run(killed, resume=True, **RESUME)
    a, b = params_of(full / "checkpoints/last.pt"), params_of(killed / "checkpoints/last.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)                       # bit-identical parameters
    for which in ("last", "best"):
        assert s_full[which]["test"] == s_res[which]["test"] and s_full[which]["val"] == s_res[which]["val"]
    assert s_full["best"]["step"] == s_res["best"]["step"]
    assert train_losses(full) == train_losses(killed)                    # the log was truncated at the checkpoint
    assert len(train_losses(full)) == 12


def _killed_copy(killed, to, edit):
    "A copy of a killed run folder whose last.pt is edited by `edit(checkpoint dict)`."
    import shutil
    shutil.copytree(killed, to)
    ck = T.load_checkpoint(to / "checkpoints/last.pt"); edit(ck); T.save_checkpoint(to / "checkpoints/last.pt", ck)
    return to


def test_kill_and_resume_restores_the_models_own_generators(tmp_path):
    """A model's own generators (HBIModel: the sampled Banzhaf target) are checkpointed and restored: bit-identical again
    (a mutant without the restore diverges). Rank 0's states serve a resume at another world size, and a checkpoint written
    before generators were saved still resumes bit-identically when the model has none (a reordering of the resume code
    once reseeded the global RNG for such checkpoints)."""
    for own_rng in (True, False):
        ch = {**RESUME, "_own_rng": own_rng}
        full, killed = tmp_path / f"full{own_rng}", tmp_path / f"killed{own_rng}"
        run(full, **ch)
        p = subprocess.run([sys.executable, str(HERE / "train_fakes.py"), "kill", str(killed), "3", json.dumps(ch)],
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == -9, p.stderr[-2000:]
        ck = T.load_checkpoint(killed / "checkpoints/last.pt")
        assert ck["generators"] == [{"noise": ck["generators"][0]["noise"]}] if own_rng else ck["generators"] == [{}]
        if own_rng:   # as if written by two ranks: rank 0's state is restored
            variants = [_killed_copy(killed, tmp_path / "two_ranks", lambda c: c.update(generators=c["generators"] * 2))]
        else:         # as if written before this change
            variants = [_killed_copy(killed, tmp_path / "old_format", lambda c: c.pop("generators"))]
        for d in [killed, *variants]:
            run(d, resume=True, **ch)
            a, b = params_of(full / "checkpoints/last.pt"), params_of(d / "checkpoints/last.pt")
            assert all(torch.equal(a[k], b[k]) for k in a), d
            assert train_losses(full) == train_losses(d), d


def test_same_seed_same_metrics(tmp_path):
    ch = {"train.max_steps": 4, "train.epochs": 1}
    s1, s2 = run(tmp_path / "a", **ch), run(tmp_path / "b", **ch)
    assert s1["last"]["test"] == s2["last"]["test"] and s1["last"]["val"] == s2["last"]["val"]
    s3 = run(tmp_path / "c", **ch, **{"train.seed": 7})
    assert s3["last"]["val"] != s1["last"]["val"]


def test_summary_and_selection(tmp_path):
    s = run(tmp_path, **{"train.eval_every": 3})
    recs = [json.loads(l) for l in open(tmp_path / "log.jsonl")]
    val_steps = [r["step"] for r in recs if r["kind"] == "eval" and r["split"] == "val"]
    assert val_steps == [3, 6, 9, 12]
    best = max((r for r in recs if r["kind"] == "eval" and r["split"] == "val"), key=lambda r: r["Rsum"])
    assert s["best"]["step"] == best["step"] and s["best"]["value"] == best["Rsum"]
    assert {"t2v/R@1", "v2t/R@1", "Rsum"} <= set(s["last"]["test"]) and s["best"]["test"] is not None
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["metrics"]["best"]["step"] == s["best"]["step"] and saved["config"]["train"]["eval_every"] == 3
    assert "git" in json.loads((tmp_path / "provenance.json").read_text())


def test_summary_records_the_data_checksums(tmp_path):
    "summary.json's provenance carries what `data_checksums` reports for the run's splits (datasets without it add nothing)."
    class Hashed(list):                                       # fake items with the dataset method
        def __init__(self, items, sums): super().__init__(items); self.sums = sums
        def checksums(self): return self.sums
    tr, va, te = Hashed(fake_pairs(16), {"fake/train": "a" * 64}), fake_pairs(8, seed=1), Hashed(fake_pairs(8, seed=2), {"fake/test": "b" * 64})
    T.train(small_cfg(**{"train.epochs": 1}), tmp_path, train_set=tr, val_set=va, test_set=te, model=FakeRetrieval(), device="cpu")
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["provenance"]["data"] == {"fake/test": "b" * 64, "fake/train": "a" * 64}


def test_summary_records_each_splits_counts(tmp_path):
    "summary.json's provenance carries each split's `summary()`: a test set that an ids or list file shrank says so in the run."
    class Counted(list):                                      # fake items with the dataset's split and summary
        def __init__(self, items, split, **counts): super().__init__(items); self.split, self.counts = split, counts
        def summary(self): return {"split": self.split, "items": len(self), **self.counts}
    tr, va, te = Counted(fake_pairs(16), "train"), fake_pairs(8, seed=1), Counted(fake_pairs(8, seed=2), "test", excluded_by_list=3)
    T.train(small_cfg(**{"train.epochs": 1}), tmp_path, train_set=tr, val_set=va, test_set=te, model=FakeRetrieval(), device="cpu")
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["provenance"]["splits"] == {"train": {"split": "train", "items": 16},
                                             "test": {"split": "test", "items": 8, "excluded_by_list": 3}}


# -- frozen encoders ---------------------------------------------------------------------------------------------
def test_frozen_feature_path(tmp_path):
    m0 = FakeRetrieval().state_dict()
    s = run(tmp_path, **{"train.freeze_encoders": True, "train.max_steps": 4})
    p = params_of(tmp_path / "checkpoints/last.pt")
    assert all(torch.equal(p[k], m0[k]) for k in m0 if k.startswith("enc_"))       # encoders untouched
    assert not torch.equal(p["head.weight"], m0["head.weight"])                    # the rest trained
    cache = torch.load(tmp_path / "cache/train_features.pt")
    assert set(cache) == {"t", "v"} and cache["t"].shape == (48, 6)
    assert s["last"]["test"]["Rsum"] > 0



class AugmentedPairs(list):
    "fake_pairs with a dataset's `augment` switch: augmented items have their video shifted by 100."
    split = "train"
    def __init__(self, items): super().__init__(items); self.augment = True
    def __getitem__(self, i):
        it = super().__getitem__(i)
        return {**it, "video": it["video"] + 100.0} if self.augment else it


def test_cache_features_encodes_unaugmented_frames():
    "A frozen encoder's cache is reused every epoch, so one augmentation draw must never be baked into it."
    items, m, cfg = fake_pairs(8), FakeRetrieval(), small_cfg()
    ds = AugmentedPairs(items)
    with pytest.warns(UserWarning, match="augmentation on"):
        got = T.cache_features(m, ds, cfg, torch.device("cpu"), progress=False)
    assert ds.augment                                                   # the dataset is left as it was
    want = T.cache_features(m, items, cfg, torch.device("cpu"), progress=False)
    assert torch.equal(got.features["v"], want.features["v"]) and torch.equal(got.features["t"], want.features["t"])


def test_fresh_start_does_not_report_an_earlier_runs_best(tmp_path):
    "A new run in an old run's folder, without a val set, has no best model; the old best.pt is not passed off as one."
    s1 = run(tmp_path, **{"train.eval_every": 3})
    assert s1["best"]["test"] is not None and (tmp_path / "checkpoints/best.pt").exists()
    s2 = T.train(small_cfg(**{"train.max_steps": 2}), tmp_path, train_set=fake_pairs(48), model=FakeRetrieval(),
                 test_set=fake_pairs(16, seed=2))
    assert s2["best"]["step"] is None and s2["best"]["test"] is None and s2["paths"]["best"] is None
    assert not (tmp_path / "checkpoints/best.pt").exists() and s2["last"]["test"] is not None


def test_fresh_start_does_not_load_an_earlier_runs_feature_cache(tmp_path):
    "resume=True without a checkpoint starts afresh: it encodes the train split again instead of loading a stale cache."
    ch = {"train.freeze_encoders": True, "train.max_steps": 2}
    run(tmp_path, **ch)
    cache = tmp_path / "cache/train_features.pt"
    good = torch.load(cache)
    (tmp_path / "checkpoints/last.pt").unlink()
    torch.save({k: torch.zeros_like(v) for k, v in good.items()}, cache)      # what another run might have left
    run(tmp_path, resume=True, **ch)
    assert torch.equal(torch.load(cache)["v"], good["v"])
    # features handed in (the shared-features path of run_rows) replace the folder's cache, so a resume finds them
    given = {k: torch.randn_like(v) for k, v in good.items()}
    T.train(small_cfg(**ch), tmp_path, train_set=fake_pairs(48), model=FakeRetrieval(), train_features=given)
    assert torch.equal(torch.load(cache)["v"], given["v"])

# -- evaluation dispatch -----------------------------------------------------------------------------------------
class Oracle(nn.Module):
    "Scores = text·video of the raw vectors; perfect when texts equal their video."
    def __init__(self): super().__init__(); self.w = nn.Parameter(torch.ones(1)); self.calls = 0
    def encode_text(self, b): return {"t": b["text"]}
    def encode_video(self, b): self.calls += len(b["video"]); return {"v": b["video"]}
    def similarity(self, t, v): return t["t"] @ v["v"].T
    def predict_answer(self, b): return b["text"][:, 0].long()
    def generate_captions(self, b): return [f"video {int(i)}" for i in b["video_id"]]


def test_evaluate_retrieval_multi_caption():
    items = fake_pairs(6, captions_per_video=3)
    for it in items: it["text"] = it["video"] * 2                                     # 3 exact captions per video
    m, cfg = Oracle(), small_cfg(**{"eval.batch_size": 4})
    out = T.evaluate(m, T.eval_loader(items, cfg), cfg)
    assert m.calls == 6                                                                # each video encoded once
    assert (out["t2v/n_queries"], out["t2v/n_gallery"], out["v2t/n_queries"]) == (18, 6, 6)
    assert out["t2v/R@1"] == 100 and out["v2t/R@1"] == 100 and out["Rsum"] == 600


def test_evaluate_qa_and_caption(monkeypatch):
    items = [{"text": torch.tensor([float(i % 3), 0.]), "video": torch.zeros(2), "answer": torch.tensor(i % 2),
              "video_id": i} for i in range(6)]
    from hbi_repro.config import override
    qa = T.evaluate(Oracle(), T.eval_loader(items, small_cfg()), override(small_cfg(), {"train.task": "qa"}))
    # predictions 0,1,2,0,1,2 vs answers 0,1,0,1,0,1 → 2 of 6 correct
    assert qa["acc"] == pytest.approx(100 * 2 / 6)
    seen = {}
    import hbi_repro.metrics as M
    monkeypatch.setattr(M, "caption_metrics", lambda p, r: seen.update(p=p, r=r) or {"CIDEr": 1.0})
    class Caps(list):   # the dataset's collate keeps each item's reference list whole
        @staticmethod
        def collate_fn(items): return {"video": torch.stack([it["video"] for it in items]),
                                       "video_id": [it["video_id"] for it in items], "references": [it["references"] for it in items]}
    caps = Caps({"video": torch.zeros(2), "video_id": i // 2, "references": [f"ref {i // 2}"]} for i in range(6))
    out = T.evaluate(Oracle(), T.eval_loader(caps, small_cfg()), override(small_cfg(), {"train.task": "caption"}))
    assert out == {"CIDEr": 1.0}
    assert seen["p"] == {0: "video 0", 1: "video 1", 2: "video 2"} and seen["r"][2] == ["ref 2"]


# -- estimator pretraining ------------------------------------------------------------------------------------------
def test_pretrain_estimator_is_thin(tmp_path, monkeypatch):
    got = {}
    from hbi_repro.banzhaf import BanzhafEstimator
    def fake_train_estimator(sims, t_masks, v_masks, t_weights, v_weights, target="exact", steps=10, generator=None, compat="paper"):
        got.update(shape=tuple(sims.shape), mask=t_masks.clone(), target=target, steps=steps, compat=compat)
        return BanzhafEstimator(4, compat), {"loss": 0.0}
    try:
        import hbi_repro.banzhaf as B
        monkeypatch.setattr(B, "train_estimator", fake_train_estimator)
    except ImportError:
        monkeypatch.setitem(sys.modules, "hbi_repro.banzhaf", types.SimpleNamespace(train_estimator=fake_train_estimator))

    class M(nn.Module):
        def __init__(self): super().__init__(); self.w = nn.Parameter(torch.ones(1))
        def matched_similarities(self, b):   # batches of different T: the collector pads them
            B, T_ = b["x"].shape
            return (torch.ones(B, T_, 3), torch.ones(B, T_, dtype=torch.bool), torch.ones(B, 3, dtype=torch.bool),
                    torch.zeros(B, T_), torch.zeros(B, 3))
    batches = [{"x": torch.zeros(2, 4)}, {"x": torch.zeros(3, 5)}]
    est, rep = T.pretrain_estimator(M(), batches, small_cfg(), target="sampled", steps=7, out_path=tmp_path / "e.pt")
    assert got["shape"] == (5, 5, 3) and got["target"] == "sampled" and got["steps"] == 7
    assert got["mask"][:2, 4].any().item() is False and got["mask"][2:].all()   # padding is masked out
    assert got["compat"] == small_cfg().model.compat                            # trained in the run's compat mode
    saved = torch.load(tmp_path / "e.pt")                                        # and the file says which
    assert set(saved) == set(BanzhafEstimator(4).state_dict()) | {"compat_official", "target_official"}
    assert not bool(saved["target_official"])                                   # sampled targets of Eq. 1, not the official estimand
    assert bool(saved["compat_official"]) == (small_cfg().model.compat == "official")


# -- command line ----------------------------------------------------------------------------------------------
def test_train_and_eval_cli(tmp_path, monkeypatch, capsys):
    "train_cli → run dir → eval_cli reads config.json back and reproduces the summary's test metrics."
    splits = {"train": fake_pairs(48), "val": fake_pairs(16, seed=1), "test": fake_pairs(16, seed=2)}
    monkeypatch.setattr(T, "_build_split", lambda cfg, split: splits[split])
    monkeypatch.setattr(T, "_build_model", lambda cfg, train_set=None: FakeRetrieval())
    monkeypatch.setattr(T, "_model_from_state", lambda cfg, state: FakeRetrieval())   # eval builds from the checkpoint
    monkeypatch.setattr(T, "default_device", lambda local_rank=0: torch.device("cpu"))
    T.train_cli("retrieval", profile="smoke", set=["train.max_steps=3", "train.batch_size=8", "data.num_workers=0"],
                run_dir=str(tmp_path))
    summary = json.loads((tmp_path / "summary.json").read_text())["metrics"]
    assert summary["steps"] == 3
    for ck in ("best", "last"):
        m = T.eval_cli(run_dir=str(tmp_path), ckpt=ck, split="test")
        assert m == summary[ck]["test"]
    assert T.config_from_dict(json.loads((tmp_path / "config.json").read_text())).train.max_steps == 3
    # the CLI does not replace a finished run unless told to (the default run folder does not depend on --set)
    with pytest.raises(FileExistsError, match="--overwrite"):
        T.train_cli("retrieval", profile="smoke", set=["train.max_steps=2", "train.batch_size=8", "data.num_workers=0"], run_dir=str(tmp_path))
    assert json.loads((tmp_path / "summary.json").read_text())["metrics"]["steps"] == 3
    T.train_cli("retrieval", profile="smoke", set=["train.max_steps=2", "train.batch_size=8", "data.num_workers=0"],
                run_dir=str(tmp_path), overwrite=True)
    assert json.loads((tmp_path / "summary.json").read_text())["metrics"]["steps"] == 2


# -- fail fast, stale files, resume checks, selection direction ------------------------------------------------------
def test_paper_profile_needs_clip_weights(tmp_path, monkeypatch):
    "The paper profile never trains a randomly initialised CLIP: unset or missing weights stop train() before any data is read."
    from hbi_repro.config import get_config
    built = []
    monkeypatch.setattr(T, "_build_split", lambda cfg, split: built.append(split) or fake_pairs(48))
    for over, msg in (([], "model.clip_checkpoint is unset"), ([f"model.clip_checkpoint={tmp_path}/none.pt"], "does not exist")):
        cfg = get_config("paper", "T1/HBI-V2", ["model.clip_name=hbi-tiny", "data.num_workers=0", *over])
        with pytest.raises(FileNotFoundError, match=msg) as e: T.train(cfg, tmp_path / "run", device="cpu")
        assert "data/README.md" in str(e.value) and "CLIP weights" in str(e.value)
    assert built == [] and not (tmp_path / "run").exists()


def test_eval_cli_from_another_cwd(tmp_path, monkeypatch):
    "A run made from nbs/ with paths relative to it (as the notebooks make them) evaluates from the repository root."
    from hbi_repro.config import get_config
    from hbi_repro.model import build_clip
    (tmp_path / "nbs").mkdir(); (tmp_path / "runs/cache").mkdir(parents=True)
    torch.save(build_clip("hbi-tiny").state_dict(), tmp_path / "runs/cache/clip.pt")
    monkeypatch.chdir(tmp_path / "nbs")
    cfg = get_config("smoke", "T1/HBI-V2", ["model.clip_checkpoint=../runs/cache/clip.pt", "train.freeze_encoders=true",
                                            "data.root=../data", "train.max_steps=2"])
    s = T.train(cfg, "../runs/r", device="cpu")
    monkeypatch.chdir(tmp_path)                    # ../runs/cache/clip.pt and ../data mean something else here
    roots, build = [], T._build_split
    monkeypatch.setattr(T, "_build_split", lambda cfg, split: roots.append(cfg.data.root) or build(cfg, split))
    for ck in ("best", "last"):
        assert T.eval_cli(run_dir="runs/r", ckpt=ck, split="test") == s[ck]["test"]   # every weight from the checkpoint
    assert roots == [str(tmp_path / "data")] * 2    # the data root as the run saw it


def test_fresh_start_removes_the_earlier_summary(tmp_path):
    "A new run in a finished run's folder, killed before it ends, leaves no summary.json that could pass for its own."
    run(tmp_path, **{"train.seed": 1})
    assert (tmp_path / "summary.json").exists()
    p = subprocess.run([sys.executable, str(HERE / "train_fakes.py"), "kill", str(tmp_path), "1", json.dumps({"train.seed": 2})],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == -9, p.stderr[-2000:]
    assert json.loads((tmp_path / "config.json").read_text())["train"]["seed"] == 2
    assert not (tmp_path / "summary.json").exists()


def test_resume_checks_the_config_and_records_segments(tmp_path):
    "resume=True continues only the run the folder holds; a resumed run's summary.json lists its segments."
    ch = {"train.epochs": 1, "train.ckpt_every": 2}
    run(tmp_path, **ch)
    log = (tmp_path / "log.jsonl").read_text()
    with pytest.raises(ValueError, match=r"train\.batch_size.*train\.epochs.*train\.seed"):
        run(tmp_path, resume=True, **{**ch, "train.epochs": 2, "train.batch_size": 16, "train.seed": 5})
    assert (tmp_path / "log.jsonl").read_text() == log and json.loads((tmp_path / "config.json").read_text())["train"]["epochs"] == 1
    s = run(tmp_path, resume=True, **{**ch, "data.num_workers": 1})    # loader processes only: the same run
    seg = json.loads((tmp_path / "summary.json").read_text())["provenance"]["segments"]
    assert [g["from_step"] for g in seg] == [0, 6] and all("git" in g and "started_utc" in g for g in seg)
    assert s["steps"] == 6
    (tmp_path / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="config.json"): run(tmp_path, resume=True, **ch)


@pytest.mark.parametrize("changes, vals", [
    (RESUME, [6, 12]),                                          # the final step validated and checkpointed in the loop
    ({"train.eval_every": 5, "train.ckpt_every": 4}, [5, 10, 12]),   # checkpointed in the loop, validated after it
])
def test_resume_after_the_final_checkpoint_validates_once(tmp_path, changes, vals):
    "A run stopped after its final checkpoint (here: in the test evaluation) resumes to the same summary, logging its final val once."
    s = run(tmp_path, **changes)
    log = (tmp_path / "log.jsonl").read_text()
    (tmp_path / "summary.json").unlink()                      # as if killed while testing
    s2 = run(tmp_path, resume=True, **changes)
    val_steps = [r["step"] for r in map(json.loads, open(tmp_path / "log.jsonl")) if r.get("split") == "val"]
    assert val_steps == vals and (tmp_path / "log.jsonl").read_text() == log
    assert s2["best"] == s["best"] and s2["last"]["test"] == s["last"]["test"]


def test_resume_refuses_a_checkpoint_of_another_config_naming_it(tmp_path):
    "last.pt records its config: a checkpoint copied in from another run is refused, as is one whose weights do not fit."
    import shutil
    ch = {"train.epochs": 1, "train.ckpt_every": 2}
    run(tmp_path / "a", **ch); run(tmp_path / "b", **{**ch, "train.lr": 0.05})
    shutil.copy(tmp_path / "b/checkpoints/last.pt", tmp_path / "a/checkpoints/last.pt")   # config.json still says lr 1e-2
    with pytest.raises(ValueError, match=r"a/checkpoints/last\.pt.*another config.*train\.lr"): run(tmp_path / "a", resume=True, **ch)
    def foreign(ck):   # an older checkpoint (no config) of a model with other weights
        del ck["config"]; ck["model"] = {k + "_other": v for k, v in ck["model"].items()}
    _killed_copy(tmp_path / "b", tmp_path / "c", foreign)
    shutil.copy(tmp_path / "a/config.json", tmp_path / "c/config.json")
    with pytest.raises(ValueError, match=r"c/checkpoints/last\.pt: its weights do not fit.*Missing key"): run(tmp_path / "c", resume=True, **ch)


def test_select_lower_is_better_keeps_the_lowest(tmp_path):
    "Selecting on MnR (lower is better) keeps the model with the lowest validation MnR."
    s = T.train(small_cfg(**{"train.eval_every": 2}), tmp_path, train_set=fake_pairs(48), val_set=fake_pairs(16, seed=1),
                test_set=fake_pairs(16, seed=2), model=FakeRetrieval(), select="t2v/MnR", device="cpu")
    vals = [(r["step"], r["t2v/MnR"]) for r in map(json.loads, open(tmp_path / "log.jsonl")) if r.get("split") == "val"]
    assert len({v for _, v in vals}) > 1
    step, low = min(vals, key=lambda x: x[1])
    assert (s["best"]["step"], s["best"]["value"]) == (step, low)


@pytest.mark.parametrize("changes, select, err, msg", [
    ({"eval.post": ("foo",)}, None, ValueError, "eval.post"),
    ({}, "MdR", KeyError, "t2v/MdR"),          # ambiguous: t2v/MdR and v2t/MdR
    ({}, "R@3", KeyError, "not among"),
    ({"train.batch_size": 0}, None, ValueError, "train.batch_size must be an integer >= 1"),   # was a ZeroDivisionError
    ({"train.epochs": 0}, None, ValueError, "train.epochs"),       # was a 'best' model that never trained
    ({"train.max_steps": -1}, None, ValueError, "train.max_steps"),
    ({"data.max_words": 2}, None, ValueError, "data.max_words"),
    ({"data.val_fraction": 1.5}, None, ValueError, "data.val_fraction"),   # was an error about the number of videos
    ({"data.val_fraction": 0.0}, None, ValueError, "data.val_fraction"),
    ({"model.levels": ()}, None, ValueError, "model.levels is empty"),   # no loss: backward() failed on a float
])
def test_bad_settings_fail_before_training(tmp_path, changes, select, err, msg):
    with pytest.raises(err, match=msg):
        T.train(small_cfg(**changes), tmp_path, train_set=fake_pairs(48), val_set=fake_pairs(16, seed=1), model=FakeRetrieval(),
                select=select, device="cpu")
    assert not (tmp_path / "config.json").exists()     # stopped before the run folder was written


def test_caption_without_java_fails_before_training(tmp_path, monkeypatch):
    import hbi_repro.metrics as M
    monkeypatch.setattr(M.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="needs Java"):
        T.train(small_cfg(**{"train.task": "caption"}), tmp_path, train_set=fake_pairs(48), val_set=fake_pairs(16, seed=1),
                model=FakeRetrieval(), device="cpu")
    assert not (tmp_path / "config.json").exists()


def test_process_group_gets_a_long_timeout(monkeypatch):
    "Rank 0 evaluates alone while the others wait in a collective: the group's timeout must outlast an evaluation."
    from datetime import timedelta
    class Stop(Exception): pass
    got = []
    def fake_init(backend, **kw): got.append((backend, kw.get("timeout"))); raise Stop
    monkeypatch.setattr(T.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(T.dist, "init_process_group", fake_init)
    monkeypatch.setenv("WORLD_SIZE", "2"); monkeypatch.setenv("RANK", "0"); monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.delenv("HBI_REPRO_DIST_TIMEOUT_MIN", raising=False)
    with pytest.raises(Stop): T.init_distributed("cpu")
    assert got[-1][0] == "gloo" and got[-1][1] is not None and got[-1][1] >= timedelta(hours=1)
    monkeypatch.setenv("HBI_REPRO_DIST_TIMEOUT_MIN", "5")
    with pytest.raises(Stop): T.init_distributed("cpu")
    assert got[-1][1] == timedelta(minutes=5)


def test_config_from_dict_warns_about_fields_it_drops():
    "A config.json field this version does not know is dropped with a warning naming it, not silently."
    import warnings
    from hbi_repro.config import get_config, config_dict
    d = config_dict(get_config("smoke", "T1/HBI-V2"))
    with warnings.catch_warnings():
        warnings.simplefilter("error"); assert T.config_from_dict(d) == get_config("smoke", "T1/HBI-V2")   # a known config: no warning
    d["model"]["old_switch"] = 1
    with pytest.warns(UserWarning, match=r"ignoring ModelConfig fields this version does not know: \['old_switch'\]"):
        assert T.config_from_dict(d) == get_config("smoke", "T1/HBI-V2")


def test_cli_set_may_be_repeated_and_eval_takes_eval_keys(tmp_path, monkeypatch):
    "A second --set used to replace the first (argparse keeps the last); eval takes eval.* overrides, such as the kernels."
    from hbi_repro.config import get_config
    from hbi_repro.model import build_clip
    real_train, got = T.train, {}
    monkeypatch.setattr(T, "train", lambda cfg, run_dir, **kw: got.update(cfg=cfg) or {})
    from hbi_repro.cli import main
    assert main(["train", "retrieval", "--profile", "smoke", "--run_dir", str(tmp_path / "r"),
                 "--set", "train.seed=5", "train.max_steps=2", "--set", "data.num_workers=0"]) in (0, None)
    assert (got["cfg"].train.seed, got["cfg"].train.max_steps, got["cfg"].data.num_workers) == (5, 2, 0)
    (tmp_path / "c").mkdir(); torch.save(build_clip("hbi-tiny").state_dict(), tmp_path / "c" / "clip.pt")
    cfg = get_config("smoke", "T1/HBI-V2", [f"model.clip_checkpoint={tmp_path / 'c' / 'clip.pt'}", "train.freeze_encoders=true",
                                            f"data.root={tmp_path / 'data'}", "train.max_steps=2"])
    real_train(cfg, tmp_path / "run", device="cpu")
    seen, evaluate = [], T.evaluate
    monkeypatch.setattr(T, "evaluate", lambda model, loader, cfg, *a: seen.append(cfg.eval.kernels) or evaluate(model, loader, cfg, *a))
    for argv, kern in (([], "eager"), (["--set", "eval.kernels=compiled"], "compiled")):
        assert main(["eval", "--run_dir", str(tmp_path / "run"), *argv]) in (0, None)
        assert seen[-1] == kern
    with pytest.raises(ValueError, match=r"eval --set takes eval\.\* keys and data.num_workers only, not \['model.levels=\[\]'\]"):
        T.eval_cli(run_dir=str(tmp_path / "run"), set=["model.levels=[]"])
    # data that differs from what the run recorded (summary.json's checksums) is said, with the metrics of the data as it is
    assert T.data_changed_since(tmp_path / "run", T._build_split(cfg, "test")) == []
    sf = tmp_path / "run" / "summary.json"
    s = json.loads(sf.read_text()); assert "synthetic/test" in s["provenance"]["data"]
    s["provenance"]["data"]["synthetic/test"] = "0" * 64; sf.write_text(json.dumps(s))
    with pytest.warns(UserWarning, match=r"synthetic/test: not what .*run was trained and tested on"):
        T.eval_cli(run_dir=str(tmp_path / "run"))
