"""Every paper-artifact notebook (nbs/run_*.ipynb) executes end to end in the `smoke` profile through papermill,
as `hbi-repro reproduce --profile smoke` would, and writes its result files."""
import os
from pathlib import Path
import pytest

NBS = Path(__file__).resolve().parent.parent / "nbs"
NOTEBOOKS = sorted(p.name for p in NBS.glob("run_*.ipynb"))


@pytest.fixture(scope="session")
def shared_runs(tmp_path_factory):
    # one runs folder for the whole session, so the smoke CLIP backbone is trained once and reused
    return tmp_path_factory.mktemp("runs")


def test_there_are_artifact_notebooks():
    assert "run_table1.ipynb" in NOTEBOOKS


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_in_smoke(name, tmp_path, shared_runs):
    import papermill as pm
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    results = tmp_path / "results"
    params = {"profile": "smoke", "results_dir": str(results)}
    src = (NBS / name).read_text()
    if '"seeds = ' in src or "seeds = [" in src: params["seeds"] = [0]
    if "runs_dir = " in src: params["runs_dir"] = str(shared_runs)
    pm.execute_notebook(str(NBS / name), str(tmp_path / name), parameters=params, cwd=str(NBS),
                        kernel_name="python3", progress_bar=False)
    written = [p for p in results.rglob("*") if p.is_file()]
    assert written, f"{name} wrote nothing under {results}"
    assert all("/smoke/" in str(p) for p in written if p.suffix == ".json"), "smoke results outside a smoke folder"
    if name == "run_table1.ipynb":   # trained rows carry the checksums of their data
        import json
        rows = [json.loads(p.read_text()) for p in written if p.name.endswith("__seed0.json")]
        splits = {"synthetic/train", "synthetic/val", "synthetic/test"}
        assert rows and all(set(r["provenance"]["data"]) >= splits for r in rows)
        extra = [set(r["provenance"]["data"]) - splits for r in rows]        # and the cached backbone's weights, one per row
        assert all(len(e) == 1 and next(iter(e)).startswith("backbone/smoke-synthetic") for e in extra), extra
    if name == "run_backbones.ipynb":   # each row names the backbone it was trained on, by its weights' hash
        import json
        rows = [json.loads(p.read_text()) for p in written if p.suffix == ".json"]
        bb = {r["provenance"]["row"].split(" | backbone ")[1]: {k for k in r["provenance"]["data"] if k.startswith("backbone/")} for r in rows}
        assert bb == {"0": {"backbone/smoke-synthetic-e1-s0-f8-w16-n48"}, "1": {"backbone/smoke-synthetic-e1-s1-f8-w16-n48"}}
