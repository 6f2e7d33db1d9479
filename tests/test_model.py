"""Model integration checks beyond the notebook: loading CLIP weights from a file, every task head end to end."""
import torch
import torch.nn.functional as F
import warnings
import pytest
from hbi_repro.config import get_config
from hbi_repro.model import HBIModel, build_clip
from hbi_repro.bench import synthetic_batch

torch.set_num_threads(1)


def test_vit_b32_state_dict_round_trip(tmp_path, caplog):
    "A random open_clip ViT-B-32 saved to a file loads back through the kit's loader with identical outputs."
    torch.manual_seed(0)
    with caplog.at_level("INFO"): src = build_clip("ViT-B-32-quickgelu").eval()
    assert not [r for r in caplog.records if "initialized randomly" in r.getMessage()]   # open_clip's warning: weights load next
    path = tmp_path / "vitb32.pt"
    torch.save(src.state_dict(), path)
    cfg = get_config("paper", "T1/Baseline", overrides=[f"model.clip_checkpoint={path}"])
    torch.manual_seed(1)                                   # a different init, so equality proves the load
    model = HBIModel.from_pretrained(cfg).eval()
    b = synthetic_batch(2, 2, 8, 224, seed=0)
    with torch.no_grad():
        ref_img = src.encode_image(b["video"].flatten(0, 1))
        got_img = model.clip.encode_image(b["video"].flatten(0, 1))
        ids77 = torch.nn.functional.pad(b["text_ids"], (0, 77 - 8))
        ref_txt, got = src.encode_text(ids77), model.encode_text(b)["t_cls"]
    torch.testing.assert_close(got_img, ref_img)
    torch.testing.assert_close(got, ref_txt, rtol=1e-5, atol=1e-5)


def test_clip_weights_that_do_not_load_are_one_short_error(tmp_path):
    "A file that is not CLIP weights for model.clip_name (a run's checkpoint, say) used to end in thousands of characters of keys."
    torch.save({"model": build_clip("hbi-tiny").state_dict(), "step": 3}, tmp_path / "best.pt")   # a run checkpoint's layout
    cfg = get_config("smoke", "T1/Baseline", overrides=[f"model.clip_checkpoint={tmp_path / 'best.pt'}"])
    with pytest.raises(ValueError, match=r"CLIP checkpoint .*best.pt' does not load into this CLIP \(RuntimeError: .*model.clip_name") as e:
        HBIModel.from_pretrained(cfg)
    assert len(str(e.value)) < 700, str(e.value)


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    cfg = get_config("smoke", "T1/Baseline", overrides=[f"model.clip_checkpoint={tmp_path / 'nope.pt'}"])
    with pytest.raises(FileNotFoundError, match="data/README.md"):
        HBIModel.from_pretrained(cfg)


@pytest.mark.parametrize("preset", ["T2/Baseline", "T2/HBI-V2", "T3/HBI-V2"])
def test_task_heads_forward_backward(preset):
    cfg = get_config("smoke", preset)
    torch.manual_seed(0)
    task = cfg.train.task
    model = HBIModel(cfg, num_answers=7 if task == "qa" else 0, vocab_size=50 if task == "caption" else 49408).train()
    b = synthetic_batch(4, 6, 10, 32, seed=0, task=task, num_answers=7)
    if task == "caption":
        g = torch.Generator().manual_seed(0)
        L = cfg.eval.max_caption_len + 2
        ids = torch.randint(3, 50, (4, L), generator=g); ids[:, 0] = 48; ids[:, 8:] = 0; ids[:, 7] = 49
        b["caption_ids"], b["caption_mask"] = ids, ids != 0
    out = model(b)
    assert torch.isfinite(out["loss"]) and "L_task" in out["logs"]
    out["loss"].backward()
    head = model.qa if task == "qa" else model.decoder
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in head.parameters() if p.requires_grad)
    model.eval()
    if task == "qa":
        pred = model.predict_answer(b)
        assert pred.shape == (4,) and int(pred.max()) < 7
    else:
        caps = model.generate_captions(b, beam_size=2)
        assert len(caps) == 4 and all(isinstance(c, list) for c in caps)


def test_caption_training_does_not_depend_on_padding():
    """The decoder's dropout draws one number per position: more caption padding (a longer eval.max_caption_len) or more
    padded frames used to shift the draws of the real positions and so change the training loss and gradients."""
    cfg = get_config("smoke", "T3/HBI-V2")
    torch.manual_seed(0)
    model = HBIModel(cfg, vocab_size=50).train()
    b = synthetic_batch(4, 6, 10, 32, seed=0)
    b["video_mask"][2, 4:] = False                                   # one shorter video
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 50, (4, 9), generator=g); ids[:, 0] = 48; ids[:, 7] = 49; ids[:, 8] = 0; ids[1, 5:] = 0; ids[1, 4] = 49
    b["caption_ids"], b["caption_mask"] = ids, ids != 0

    def loss_and_grads(batch):
        torch.manual_seed(1); model.zero_grad()
        out = model(batch); out["loss"].backward()
        return out["loss"].detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    padded = dict(b)
    padded["caption_ids"] = torch.nn.functional.pad(ids, (0, 7))   # seven more padded words
    padded["caption_mask"] = padded["caption_ids"] != 0
    padded["video"] = torch.cat([b["video"], torch.randn(4, 3, *b["video"].shape[2:])], 1)   # three padded frames of noise
    padded["video_mask"] = torch.nn.functional.pad(b["video_mask"], (0, 3))
    (l0, g0), (l1, g1) = loss_and_grads(b), loss_and_grads(padded)
    torch.testing.assert_close(l1, l0, rtol=1e-5, atol=1e-6)
    assert g0.keys() == g1.keys()
    for n in g0: torch.testing.assert_close(g1[n], g0[n], rtol=1e-4, atol=1e-6, msg=n)


def test_caption_decoder_initial_weights_do_not_depend_on_its_length():
    "eval.max_caption_len sizes the position table; drawn last, it changes no other initial weight (it used to shift them all)."
    from hbi_repro.heads import CaptionDecoder
    torch.manual_seed(0); a = CaptionDecoder(32, 50, max_len=12, heads=4).state_dict()
    torch.manual_seed(0); b = CaptionDecoder(32, 50, max_len=22, heads=4).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a if k != "pos") and a["pos"].shape == (12, 32) and b["pos"].shape == (22, 32)


def test_compiled_inference_kernels_match_eager(monkeypatch):
    """eval.kernels=compiled scores a gallery like the eager path (to float rounding), at every level, with padding,
    fully padded texts and videos, in float32 through the fused C++ kernel and through Inductor's, in float64 and
    under bf16 autocast; its availability probes leave the RNG alone."""
    import shutil
    import hbi_repro.reconstruct as R
    from hbi_repro.bench import _random_features
    R._COMPILE_OK.pop(("cpu", torch.float32), None)
    state = torch.random.get_rng_state()
    with torch.autocast("cpu", dtype=torch.bfloat16):               # the probe runs outside the caller's autocast
        ok = R.compiled_kernels_available("cpu", torch.float32)
    assert torch.equal(state, torch.random.get_rng_state())
    if not ok:
        assert not (shutil.which("cc") or shutil.which("gcc")), "a C compiler is here, yet the compiled kernels are unavailable"
        pytest.skip("no C compiler: torch.compile cannot build CPU kernels here (the eager fallback is what runs)")
    torch.manual_seed(0)
    eager = HBIModel(get_config("smoke", "T1/HBI-V2")).eval()
    compiled = HBIModel(get_config("smoke", "T1/HBI-V2", overrides=["eval.kernels=compiled"])).eval()
    compiled.load_state_dict(eager.state_dict())
    text, video = _random_features(eager, 37, 29, 12, 32, "cpu", seed=3)
    video["v_mask"][::3, 7:] = False                          # shorter videos too
    text["t_mask"][4] = False; video["v_mask"][6] = False     # a text and a video with no real token
    R._FUSED_OK.clear()
    monkeypatch.delenv("HBI_REPRO_FUSED_KERNEL", raising=False)       # the caller's setting must not skip the C++ kernel here
    state = torch.random.get_rng_state()
    assert R.fused_kernel_available("cpu", torch.float32)               # g++ is here (Inductor needs it too)
    assert torch.equal(state, torch.random.get_rng_state())
    calls, fused_blocks = [], R._fused_blocks
    monkeypatch.setattr(R, "_fused_blocks", lambda *a: calls.append(1) or fused_blocks(*a))
    with torch.no_grad():
        for fused in (True, False):                                     # the C++ kernel, then Inductor's
            monkeypatch.setenv("HBI_REPRO_FUSED_KERNEL", "on" if fused else "off")
            calls.clear()
            for levels in (("entity",), ("action",), ("event",), None):
                want = eager.similarity(text, video, levels=levels)
                torch.testing.assert_close(compiled.similarity(text, video, levels=levels), want, atol=2e-5, rtol=0)
            assert bool(calls) == fused
        monkeypatch.setenv("HBI_REPRO_FUSED_KERNEL", "on"); calls.clear()
        with torch.autocast("cpu", dtype=torch.bfloat16):               # bf16 products: Inductor's kernels, not the C++ one
            got, want = compiled.similarity(text, video), eager.similarity(text, video)
        assert not calls
        assert R._COMPILE_OK[("cpu", torch.float32)]
        assert R._COMPILE_OK[("cpu", torch.bfloat16)]                # merged levels arrive in bf16: compiled too
        torch.testing.assert_close(got.float(), want.float(), atol=1e-2, rtol=0)  # bf16 products (ulp 4e-3 at |S| ≈ 0.65)
        e64, c64 = eager.double(), compiled.double()
        t64 = {k: x.double() if x.is_floating_point() else x for k, x in text.items()}
        v64 = {k: x.double() if x.is_floating_point() else x for k, x in video.items()}
        torch.testing.assert_close(c64.similarity(t64, v64), e64.similarity(t64, v64), atol=1e-10, rtol=0)
        assert R._COMPILE_OK[("cpu", torch.float64)]                 # float64 really ran compiled
    with pytest.raises(ValueError, match="eval.kernels"):
        HBIModel(get_config("smoke", "T1/HBI-V2", overrides=["eval.kernels=fast"]))


@pytest.mark.parametrize("seed", range(4))
def test_fused_kernel_matches_eager_on_random_shapes(seed, monkeypatch):
    """The C++ kernel against the eager expansion on random sizes (texts, videos, words, frames, width, hidden widths),
    masks with holes, an empty text and an empty video, both weight modes and several block sizes."""
    import hbi_repro.reconstruct as R
    from hbi_repro.similarity import WeightHead
    monkeypatch.delenv("HBI_REPRO_FUSED_KERNEL", raising=False)   # the caller's setting must not skip this test
    if not R.fused_kernel_available():
        pytest.skip("the fused kernel cannot be built here (test_compiled_inference_kernels_match_eager says why)")
    g = torch.Generator().manual_seed(seed)                 # (impl="fused" is called directly: HBI_REPRO_FUSED_KERNEL does not apply)
    A, B, T, V = (int(x) for x in torch.randint(1, 40, (4,), generator=g))
    D, H, Hw = (int(x) for x in torch.randint(4, 40, (3,), generator=g))
    t, v, tc = torch.randn(A, T, D, generator=g), torch.randn(B, V, D, generator=g), torch.randn(A, D, generator=g)
    tm, vm = torch.rand(A, T, generator=g) < 0.7, torch.rand(B, V, generator=g) < 0.7
    tm[0] = False; vm[-1] = False
    torch.manual_seed(seed)
    rec, th, vh = R.Reconstruction(D, H), WeightHead(D, Hw), WeightHead(D, Hw)
    for m in (rec.gamma_mlp, rec.delta_mlp): torch.nn.init.normal_(m.fc2.weight, std=0.5, generator=g)
    with torch.no_grad():
        for mode in ("reconstructed", "single"):
            rec.token_weights = mode
            want = R._pairwise(rec, t, tm, tc, v, vm, th, vh, None, False, impl="eager")
            for chunk in (None, 1, 7, 33):
                got = R._pairwise(rec, t, tm, tc, v, vm, th, vh, chunk, False, impl="fused")
                torch.testing.assert_close(got, want, atol=2e-5, rtol=0)


def test_fused_kernel_falls_back_without_a_compiler(monkeypatch, tmp_path):
    "With a compiler that fails, the kernel is not built, a warning says so, and kernels='compiled' still scores correctly (Inductor's kernels)."
    import hbi_repro.reconstruct as R
    from hbi_repro.similarity import WeightHead
    monkeypatch.setattr(R, "_FUSED", {}); monkeypatch.setattr(R, "_FUSED_OK", {})   # a fresh process, as far as the kernel knows
    monkeypatch.setenv("HBI_REPRO_KERNEL_DIR", str(tmp_path))
    monkeypatch.delenv("HBI_REPRO_FUSED_KERNEL", raising=False)
    with monkeypatch.context() as mp:               # only the kernel's build sees the failing compiler (Inductor reads $CXX too)
        mp.setenv("CXX", "false")
        with pytest.warns(UserWarning, match="fused CPU kernel is unavailable"):
            assert not R.fused_kernel_available()
    assert not list(tmp_path.iterdir())                                     # nothing half-built left behind
    g = torch.Generator().manual_seed(0)
    t, v, tc = torch.randn(4, 5, 8, generator=g), torch.randn(3, 4, 8, generator=g), torch.randn(4, 8, generator=g)
    tm, vm = torch.ones(4, 5, dtype=torch.bool), torch.ones(3, 4, dtype=torch.bool)
    rec, th, vh = R.Reconstruction(8, 6), WeightHead(8, 7), WeightHead(8, 7)
    with torch.no_grad():
        got = rec.pairwise_similarity(t, tm, tc, v, vm, th, vh, kernels="compiled")
        assert R.LAST_IMPL["impl"] == "compiled"                           # Inductor's kernels ran, not the eager path
        torch.testing.assert_close(got, rec.pairwise_similarity(t, tm, tc, v, vm, th, vh), atol=1e-5, rtol=0)
    got = rec.pairwise_similarity(t, tm, tc, v, vm, th, vh, kernels="compiled")   # with gradients: the eager path
    assert R.LAST_IMPL["impl"] == "eager" and got.requires_grad
    torch.testing.assert_close(got, rec.pairwise_similarity(t, tm, tc, v, vm, th, vh), atol=0, rtol=0)


def test_training_with_cpp_kernels_matches_eager(monkeypatch):
    """train.kernels=compiled: an HBI V2 training step has the eager path's loss and gradients (to float rounding), the C++
    pair MLPs run for all four MLPs and the C++ Eq. 12 maxima at every level, autocast keeps them out; an unknown value is a clear error."""
    import hbi_repro.reconstruct as R
    monkeypatch.delenv("HBI_REPRO_FUSED_KERNEL", raising=False)
    R._FUSED_OK.pop("train", None)
    if R._fused_lib() is None:
        pytest.skip("the C++ kernels cannot be built here (test_compiled_inference_kernels_match_eager says why)")
    assert R.train_kernels_available()                                      # built, and its own check passed
    torch.manual_seed(0)
    eager = HBIModel(get_config("smoke", "T1/HBI-V2")).train()
    fast = HBIModel(get_config("smoke", "T1/HBI-V2", overrides=["train.kernels=compiled"])).train()
    fast.load_state_dict(eager.state_dict())
    b = synthetic_batch(6, 5, 9, 32, seed=1)
    b["video_mask"][1, 3:] = False                                          # a shorter video
    calls, pair_mlp, cos_max = [], R._pair_mlp, R._cos_max
    monkeypatch.setattr(R, "_pair_mlp", lambda *a: calls.append("mlp") or pair_mlp(*a))
    monkeypatch.setattr(R, "_cos_max", lambda *a: calls.append("max") or cos_max(*a))
    res = {}
    for name, m in (("eager", eager), ("fast", fast)):
        calls.clear()
        out = m(b)
        out["loss"].backward()
        res[name] = (out["loss"].detach(), {n: p.grad for n, p in m.named_parameters() if p.grad is not None}, sorted(calls))
    assert res["eager"][2] == [] and res["fast"][2] == ["max"] * 3 + ["mlp"] * 12   # γ, δ, both weight heads, maxima: three levels
    torch.testing.assert_close(res["fast"][0], res["eager"][0], atol=1e-5, rtol=1e-5)
    assert res["fast"][1].keys() == res["eager"][1].keys()
    for n, g in res["eager"][1].items():
        torch.testing.assert_close(res["fast"][1][n], g, atol=1e-5 * max(1.0, g.abs().max().item()), rtol=1e-4, msg=n)
    calls.clear()
    with torch.autocast("cpu", dtype=torch.bfloat16): fast(b)
    assert not calls
    with pytest.raises(ValueError, match="train.kernels"):
        HBIModel(get_config("smoke", "T1/HBI-V2", overrides=["train.kernels=fast"]))


def test_pretrained_estimator_loads_into_the_model(tmp_path):
    "What `pretrain-estimator` writes (train_estimator's own width) loads into HBIModel with banzhaf_target=learned."
    from hbi_repro.banzhaf import train_estimator
    g = torch.Generator().manual_seed(0)
    N, T, V = 12, 5, 4
    sims = torch.randn(N, T, V, generator=g)
    tm, vm = torch.ones(N, T, dtype=torch.bool), torch.ones(N, V, dtype=torch.bool)
    est, _ = train_estimator(sims, tm, vm, torch.randn(N, T, generator=g), torch.randn(N, V, generator=g), steps=2, generator=g)
    path = tmp_path / "estimator.pt"
    torch.save(est.state_dict(), path)
    cfg = get_config("smoke", "T1/HBI-V2", overrides=["model.banzhaf_target=learned", f"model.estimator_checkpoint={path}"])
    model = HBIModel.from_pretrained(cfg)
    assert all(torch.equal(model.estimator.state_dict()[k], v) for k, v in est.state_dict().items())
    with torch.no_grad():
        torch.testing.assert_close(model.estimator(sims, tm, vm), est(sims, tm, vm))


@pytest.mark.parametrize("task", ["qa", "caption", "learned"])
def test_load_trained_rebuilds_task_heads(tmp_path, task):
    "analysis.load_trained reads the answer vocabulary, caption vocabulary and estimator width from a finished run's weights."
    import json
    from hbi_repro.config import config_dict
    from hbi_repro.analysis import load_trained
    from hbi_repro.banzhaf import BanzhafEstimator
    cfg = get_config("smoke", "T1/HBI-V2", overrides=["model.banzhaf_target=learned"]) if task == "learned" else get_config("smoke", task=task)
    torch.manual_seed(0)
    model = HBIModel(cfg, **({"num_answers": 7} if task == "qa" else {"vocab_size": 50} if task == "caption" else {}))
    if task == "learned": model.estimator = BanzhafEstimator(32)       # the width `pretrain-estimator` trains
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "config.json").write_text(json.dumps(config_dict(cfg)))
    torch.save({"model": model.state_dict()}, tmp_path / "checkpoints" / "best.pt")
    got, _ = load_trained(tmp_path)
    assert all(torch.equal(got.state_dict()[k], v) for k, v in model.state_dict().items())


def test_official_compat_reaches_every_module():
    "model.compat='official' builds the merges, the prediction headers and the learned estimator in official mode."
    for compat in ("paper", "official"):   # T1/HBI: the official code's model (no reconstruction), all three levels
        cfg = get_config("smoke", "T1/HBI", overrides=[f"model.compat={compat}", "model.banzhaf_target=learned"])
        m = HBIModel(cfg)
        merges = [*m.v_merge.values(), *m.t_merge.values()]
        assert merges and all(x.compat == compat and x.conv.compat == compat for x in merges)
        assert all(L.header.compat == compat for L in m.level.values()) and m.estimator.compat == compat


def test_official_compat_refuses_reconstruction():
    """Eq. 12 on reconstructed tokens has only the paper's padding rule: compat='official' with reconstruction is an error,
    not a silent hybrid (it used to build, and its S equalled the paper mode's to 0.0)."""
    with pytest.raises(ValueError, match="model.reconstruction=false"):
        HBIModel(get_config("smoke", "T1/HBI-V2", overrides=["model.compat=official"]))
    with pytest.raises(ValueError, match="model.compat must be"):
        HBIModel(get_config("smoke", "T1/HBI", overrides=["model.compat=offical"]))


@pytest.mark.parametrize("override, message", [
    ('model.levels=["entity","acton"]', "model.levels must be"),          # a typo used to drop the level silently
    ('model.infer_levels=["scene"]', "model.infer_levels must be"),
    ("model.infer_levels=[]", "model.infer_levels must be a non-empty"),
    ('model.distill=[["entity","evnt"]]', "model.distill"),
    ('model.distill=[["entity"]]', "model.distill"),
    ("model.clusters=[6,2,16]", "model.clusters must be"),
    ("model.clusters=[6,0,16,4]", "model.clusters must be"),
])
def test_model_config_names_a_bad_level_distill_pair_or_cluster_list(override, message):
    "Checked before any data or weights (`check_model_config`, also run by `train.check_run`)."
    with pytest.raises(ValueError, match=message):
        HBIModel(get_config("smoke", "T1/HBI-V2", overrides=[override]))


def test_official_estimator_checkpoint_loads(tmp_path):
    "An official BanzhafModule state dict (plain keys, unused bn.*, no out_scale) loads and gives the official module's outputs."
    from hbi_repro.banzhaf import PredictionHeader
    torch.manual_seed(0)
    official = PredictionHeader("cnn_sa", 64, compat="official")          # the official module's computation
    sd = {**official.state_dict(), **{f"bn.{k}": v for k, v in torch.nn.BatchNorm2d(64).state_dict().items()}}
    path = tmp_path / "Estimator_epoch6.pth"
    torch.save(sd, path)
    cfg = get_config("smoke", "T1/HBI", overrides=["model.compat=official", "model.banzhaf_target=learned",
                                                   f"model.estimator_checkpoint={path}"])
    model = HBIModel.from_pretrained(cfg)
    x, tm, vm = torch.randn(3, 6, 4), torch.ones(3, 6, dtype=torch.bool), torch.ones(3, 4, dtype=torch.bool)
    with torch.no_grad():
        torch.testing.assert_close(model.estimator(x, tm, vm), official(x, tm, vm), rtol=0, atol=0)
    with pytest.warns(UserWarning, match="official ×1000 scale already"):    # the official teacher outputs ×1000: scaling again is flagged
        HBIModel.from_pretrained(get_config("smoke", "T1/HBI", overrides=["model.compat=official", "model.banzhaf_target=learned",
                                                                          f"model.estimator_checkpoint={path}", "model.banzhaf_scale=1000"]))
    from hbi_repro.banzhaf import BanzhafEstimator, estimator_state
    for target, warns in (("official", True), ("exact", False)):               # a kit estimator says which target it learnt
        kit = tmp_path / f"kit_{target}.pt"
        torch.save(estimator_state(BanzhafEstimator(8), target), kit)
        cfg_k = get_config("smoke", "T1/HBI-V2", overrides=["model.banzhaf_target=learned", f"model.estimator_checkpoint={kit}",
                                                            "model.banzhaf_scale=1000"])
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always"); HBIModel.from_pretrained(cfg_k)
        assert any("×1000 scale already" in str(x.message) for x in w) == warns, target
    bad = tmp_path / "not_an_estimator.pt"
    torch.save({"weight": torch.zeros(2)}, bad)
    with pytest.raises(ValueError, match="not_an_estimator.pt"):
        HBIModel.from_pretrained(get_config("smoke", "T1/HBI-V2", overrides=["model.banzhaf_target=learned", f"model.estimator_checkpoint={bad}"]))


def test_banzhaf_scale_multiplies_the_target():
    "model.banzhaf_scale multiplies I (exact or learned) before Eq. 6; the default 1 returns I itself."
    from hbi_repro.banzhaf import banzhaf_interaction, random_game
    gm = random_game(4, 5, 3, generator=torch.Generator().manual_seed(0))
    sim, tm, vm, tw, vw = (gm[k] for k in ("sim", "t_mask", "v_mask", "t_weight", "v_weight"))
    I = banzhaf_interaction(sim.float(), tm, vm, tw.float(), vw.float())
    for scale in (1.0, 1000.0):
        m = HBIModel(get_config("smoke", "T1/HBI-V2", overrides=[f"model.banzhaf_scale={scale}"]))
        got = m.banzhaf_target(sim, tm, vm, tw, vw)
        assert torch.equal(got, I) if scale == 1 else torch.allclose(got, I * scale, rtol=1e-6, atol=0)
    m = HBIModel(get_config("smoke", "T1/HBI-V2", overrides=["model.banzhaf_scale=1000", "model.banzhaf_target=learned"]))
    with torch.no_grad():
        torch.testing.assert_close(m.banzhaf_target(sim, tm, vm, tw, vw), m.estimator(sim.float(), tm, vm) * 1000)


def test_qa_loss_is_finite_when_no_answer_is_in_the_vocabulary():
    "A QA batch whose answers are all out of vocabulary (label -1) adds no task loss instead of NaN."
    cfg = get_config("smoke", "T2/HBI-V2")
    torch.manual_seed(0)
    model = HBIModel(cfg, num_answers=7).train()
    b = synthetic_batch(4, 6, 10, 32, seed=0, task="qa", num_answers=7)
    b["answer"] = torch.full_like(b["answer"], -1)
    out = model(b)
    assert torch.isfinite(out["loss"]) and out["logs"]["L_task"].item() == 0.0
    out["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    # with some answers in the vocabulary: exactly cross_entropy's mean over them (the loss is written as sum / count)
    b["answer"] = torch.tensor([3, -1, 0, -1])
    seen, logits_of = [], model.answer_logits_from
    model.answer_logits_from = lambda *a: seen.append(logits_of(*a)) or seen[-1]
    out = model(b)
    assert torch.equal(out["logs"]["L_task"], F.cross_entropy(seen[0].detach(), b["answer"], ignore_index=-1))


def test_sampled_target_draws_from_the_models_own_generator():
    "banzhaf_target='sampled' draws from HBIModel.target_generator (seeded by train.seed), never from the global RNG."
    from hbi_repro.banzhaf import random_game
    gm = random_game(3, 5, 4, generator=torch.Generator().manual_seed(1))
    args = [gm[k].float() if gm[k].is_floating_point() else gm[k] for k in ("sim", "t_mask", "v_mask", "t_weight", "v_weight")]
    def targets(seed, n=2):
        m = HBIModel(get_config("smoke", "T1/HBI-V2", overrides=["model.banzhaf_target=sampled", "model.banzhaf_samples=8",
                                                                 f"train.seed={seed}"]))
        torch.manual_seed(123); before = torch.get_rng_state()
        out = [m.banzhaf_target(*args) for _ in range(n)]
        assert torch.equal(torch.get_rng_state(), before)                  # the global RNG is untouched
        return out, m
    (a1, a2), m = targets(0)
    (b1, b2), _ = targets(0)
    (c1, _), _ = targets(1)
    assert torch.equal(a1, b1) and torch.equal(a2, b2)                    # same train.seed, same draws
    assert not torch.equal(a1, a2) and not torch.equal(a1, c1)            # fresh draws per call; another seed, others
    assert set(m.generators()) == {"banzhaf_target"}
