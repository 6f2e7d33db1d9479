"""Every paper-artifact notebook (nbs/run_*.ipynb) executes end to end in the `smoke` profile through papermill,
as `hbi-repro reproduce --profile smoke` would, and writes its result files."""
import os
from pathlib import Path
import pytest

NBS = Path(__file__).resolve().parent.parent / "nbs"
NOTEBOOKS = sorted(p.name for p in NBS.glob("run_*.ipynb"))
# extra parameter sets worth a smoke run of their own: run_backbones' QA study (other task, two chains, two metrics)
# its Table VI study (per-row overrides: the cluster numbers) and its captioning study (Table III)
CASES = [(n, {}) for n in NOTEBOOKS] + [("run_backbones.ipynb", {"study": s}) for s in ("T4qa", "T6", "T3")]


@pytest.fixture(scope="session")
def shared_runs(tmp_path_factory):
    # one runs folder for the whole session, so the smoke CLIP backbone is trained once and reused
    return tmp_path_factory.mktemp("runs")


def test_there_are_artifact_notebooks():
    assert "run_table1.ipynb" in NOTEBOOKS


@pytest.mark.parametrize("name,extra", CASES, ids=[n + "".join(f"-{v}" for v in e.values()) for n, e in CASES])
def test_notebook_runs_in_smoke(name, extra, tmp_path, shared_runs):
    import papermill as pm
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    results = tmp_path / "results"
    params = {"profile": "smoke", "results_dir": str(results), **extra}
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
        others = [set(r["provenance"]["data"]) - splits for r in rows]       # and the cached backbone's weights, one per row
        assert all(len(e) == 1 and next(iter(e)).startswith("backbone/smoke-synthetic") for e in others), others
        # and each split's counts: the test split's items are the videos the test metrics were computed on
        assert all(set(r["provenance"]["splits"]) == {"train", "val", "test"} for r in rows)
        assert all(r["provenance"]["splits"]["test"]["items"] == r["provenance"]["splits"]["test"]["videos"] > 0 for r in rows)
    if name == "run_backbones.ipynb":   # each row names the backbone it was trained on, by its weights' hash
        import json
        rows = [json.loads(p.read_text()) for p in written if p.suffix == ".json"]
        bb = {r["provenance"]["row"].split(" | backbone ")[1]: {k for k in r["provenance"]["data"] if k.startswith("backbone/")} for r in rows}
        assert bb == {"0": {"backbone/smoke-synthetic-e1-s0-f8-w16-n48"}, "1": {"backbone/smoke-synthetic-e1-s1-f8-w16-n48"}}
        study = extra.get("study", "T1a")
        folder = {"T1a": "backbones-synthetic", "T4qa": "backbones-table4-qa-synthetic", "T6": "backbones-table6-synthetic",
                  "T3": "backbones-table3-synthetic"}[study]
        assert {p.parent.parent.name for p in written} == {folder}                       # the study's own folder
        if study == "T6":   # each row trained with its Table VI cluster numbers, Nt^a halved as in run_table6 (9-3-18-4 → 9, 3, 9, 4)
            clusters = {r["provenance"]["row"]: r["config"]["model"]["clusters"] for r in rows}
            paper = {label: [int(x) for x in label.split(" | ")[0].split("-")] for label in clusters}
            assert len(clusters) == 10 and all(c == [a, b, t // 2, o] for label, c in clusters.items()
                                               for a, b, t, o in [paper[label]]), clusters
        rows = {r["provenance"]["row"].split(" | ")[0] for r in rows}
        assert rows == {"T4qa": {"row3", "row4", "row5", "row6"}, "T1a": {"Baseline", "HBI", "HBI V2"},
                        "T6": {"9-3-18-4", "9-3-16-4", "6-2-16-4", "6-2-12-3", "3-2-8-3"}, "T3": {"Baseline", "HBI", "HBI V2"}}[study]
        table = (results / folder / "smoke" / "table.md").read_text()
        # the chains checked are the paper's own orders (its numbers, from results/reference), nothing else
        chains = {"T4qa": ["row5 < row6 (paper 46.1 < 46.2)"],
                  "T1a": ["Baseline < HBI < HBI V2 (paper 46.6 < 48.6 < 49.4)", "HBI < HBI V2 (paper 46.8 < 47.7)"],
                  "T6": ["9-3-18-4 < 6-2-16-4 (paper 48.7 < 49.4)", "3-2-8-3 < 6-2-16-4 (paper 48.7 < 49.4)"],
                  "T3": ["HBI < HBI V2 (paper 55.3 < 59.1)"]}[study]
        unchecked = {"T4qa": ["row3 < row4: not a claim of the paper (row3 46.0, row4 46.0)", "the paper has no in-vocab accuracy"],
                     "T1a": ["Baseline left out (the paper has no v2t R@1 for it)"],   # v2t: Table I has HBI and HBI V2 only
                     "T6": ["the paper has no v2t R@1 for 9-3-18-4, 6-2-16-4; not checked"],
                     "T3": ["Baseline left out (the paper has no CIDEr for it)"]}[study]
        metrics = {"T4qa": ["### accuracy", "### in-vocab accuracy"], "T3": ["### CIDEr", "### ROUGE-L"]}.get(study, ["### t2v R@1", "### v2t Rsum"])
        assert all(f"Paper's order {c} on the means" in table for c in chains), table
        assert all(u in table for u in unchecked) and all(m in table for m in metrics), table
        if study == "T4qa":                                                               # QA runs: accuracy, no retrieval metrics
            assert all("acc" in r["metrics"]["test"] and "t2v" not in r["metrics"]["test"]
                       for r in (json.loads(p.read_text()) for p in written if p.suffix == ".json"))
