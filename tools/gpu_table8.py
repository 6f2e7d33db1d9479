"""Device check for issue 4 / Table VIII (run on a GPU machine from the repository root):

    python tools/gpu_table8.py OUT_DIR

writes OUT_DIR/table8_gpu_bf16.json (`bench.bench_table8`: random ViT-B/32, batch 128, bf16, every bench row side
by side, compiled rows compiling in their warm-up pass) and OUT_DIR/gpu_kernels_check.json (compiled vs eager
scores of a paper-size HBI V2 on 1000 x 1000 cached features, fp32 and bf16 autocast)."""
import json, sys, time
from pathlib import Path
import torch
from hbi_repro.config import get_config
from hbi_repro.model import HBIModel
from hbi_repro.bench import _random_features, bench_table8

if any(a in ("-h", "--help") for a in sys.argv[1:]) or len(sys.argv) > 2: raise SystemExit(__doc__)
if not torch.cuda.is_available(): raise SystemExit("tools/gpu_table8.py needs a CUDA GPU (Table VIII's GPU columns); none is visible here")
out = Path(sys.argv[1] if len(sys.argv) > 1 else "results/bench"); out.mkdir(parents=True, exist_ok=True)
print(torch.__version__, torch.cuda.get_device_name(0), flush=True)
r = bench_table8(out=str(out / "table8_gpu_bf16.json"))
for k, v in r["rows"].items():
    print(k, {x: round(v[x], 4) for x in ("step_s", "step_ratio", "similarity_s", "first_similarity_s", "inference_s", "inference_ratio")}, flush=True)

torch.manual_seed(0)
m = HBIModel(get_config("paper", "T1/HBI-V2")).cuda().eval()
mc = HBIModel(get_config("paper", "T1/HBI-V2", overrides=["eval.kernels=compiled"])).cuda().eval()
mc.load_state_dict(m.state_dict())
text, video = _random_features(m, 1000, 1000, 12, 32, "cuda", 0)
res = {}
for prec in ("fp32", "bf16"):
    ctx = torch.autocast("cuda", dtype=torch.bfloat16) if prec == "bf16" else torch.autocast("cuda", enabled=False)
    times = {"eager": [], "compiled": []}
    with torch.no_grad(), ctx:
        for _ in range(4):
            for name, model in (("eager", m), ("compiled", mc)):
                torch.cuda.synchronize(); t0 = time.perf_counter(); S = model.similarity(text, video); torch.cuda.synchronize()
                times[name].append(time.perf_counter() - t0)
                if name == "eager": Se = S.float()
                else: Sc = S.float()
    res[prec] = dict(max_abs_diff=(Se - Sc).abs().max().item(), max_abs_score=Se.abs().max().item(),
                     top1_agree=(Se.argmax(1) == Sc.argmax(1)).float().mean().item(),
                     eager_s=sorted(times["eager"][1:])[1], compiled_s=sorted(times["compiled"][1:])[1],
                     first_call_s={k: v[0] for k, v in times.items()})
    print(prec, res[prec], flush=True)
(out / "gpu_kernels_check.json").write_text(json.dumps({"device": torch.cuda.get_device_name(0), "torch": torch.__version__, **res}, indent=1))
