"""Foundation checks: light import, CLI, configs, requirements pinning."""
import json, subprocess, sys, time
import pytest
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_py(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout


def test_import_is_light():
    # `import hbi_repro` must not pull in open_clip, decord or torch, and must take well under a second
    out = run_py("import time, sys; t=time.perf_counter(); import hbi_repro, hbi_repro.config, hbi_repro.cli; "
                 "print(time.perf_counter()-t); print(','.join(m for m in ('open_clip','decord','torch') if m in sys.modules))")
    elapsed, heavy = out.strip().split("\n") if "\n" in out.strip() else (out.strip(), "")
    assert float(elapsed) < 1.0, elapsed
    assert heavy == "", f"heavy modules imported: {heavy}"


def test_cli_help_and_info():
    exe = Path(sys.executable).parent / "hbi-repro"
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, check=True).stdout
    assert "info" in out
    info = json.loads(subprocess.run([str(exe), "info", "--as_json"], capture_output=True, text=True, check=True, cwd="/").stdout)
    assert info["torch"] and info["hbi_repro"]
    sha = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent).stdout.strip()
    assert info["git"]["sha"] == sha          # the kit's checkout, also when run from another folder (it said None there)
    bad = subprocess.run([str(exe), "no-such-command"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown subcommand" in bad.stderr


def test_requirements_pinned_in_one_file():
    lines = [l.split("#")[0].strip() for l in (ROOT / "requirements.txt").read_text().splitlines()]
    reqs = [l for l in lines if l]
    assert all("==" in r for r in reqs), [r for r in reqs if "==" not in r]
    names = {r.split("==")[0].lower() for r in reqs}
    for needed in ("torch", "torchvision", "open_clip_torch", "decord", "pycocoevalcap", "nbdev", "papermill", "jupyterlab"):
        assert needed in names, needed
    assert "torch==2.14.1" in reqs and "torchvision==0.29.1" in reqs


def test_every_preset_builds_in_every_profile():
    from hbi_repro.config import PRESETS, PROFILES, get_config
    for p in PROFILES:
        for name in PRESETS:
            cfg = get_config(p, name)
            assert cfg.profile == p and cfg.preset == name


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and "make test" in ci


def test_backbone_cache_key_names_split_settings(tmp_path):
    "A backbone pretrained with another val carve or seed is not reused: those settings are in its cache key."
    from hbi_repro.experiments import backbone
    default = tmp_path / "smoke-synthetic-e1-s0-f8-w16-n48" / "clip.pt"            # the name existing caches have
    other = tmp_path / "smoke-synthetic-e1-s0-f8-w16-n48-val_fraction0.2" / "clip.pt"
    for p in (default, other): p.parent.mkdir(parents=True); p.write_bytes(b"")
    assert backbone("smoke", root=tmp_path) == default
    assert backbone("smoke", root=tmp_path, overrides=("data.val_fraction=0.2",)) == other


def test_rows_from_a_finished_run_carry_its_data_checksums(tmp_path):
    "save_row with run_dir/reused_run copies the run's data checksums and split counts from its summary.json (figure notebooks reuse runs)."
    from hbi_repro.results import save_row
    run = tmp_path / "run"; run.mkdir()
    splits = {"test": {"split": "test", "items": 5, "excluded_by_list": 2}}
    (run / "summary.json").write_text(json.dumps({"metrics": {}, "provenance": {"data": {"synthetic/test": "c" * 64}, "splits": splits}}))
    p = save_row("figX", "smoke", "row", None, 0, {"m": 1.0}, None, None, root=tmp_path / "res", run_dir=str(run))
    assert json.loads(p.read_text())["provenance"]["data"] == {"synthetic/test": "c" * 64}
    assert json.loads(p.read_text())["provenance"]["splits"] == splits     # and the splits' counts
    p = save_row("figX", "smoke", "row2", None, 0, {"m": 1.0}, None, None, root=tmp_path / "res", reused_run=str(tmp_path / "none"))
    assert not {"data", "splits"} & set(json.loads(p.read_text())["provenance"])   # a run without them adds none


def test_an_unknown_preset_is_named_with_the_known_ones():
    "get_config with a mistyped preset says so and lists the presets (it used to raise a bare KeyError: 'NOPE')."
    import pytest
    from hbi_repro.config import get_config
    with pytest.raises(KeyError, match=r"unknown preset 'NOPE'; presets: .*T1/HBI-V2"): get_config("smoke", "NOPE")


def test_reproduce_prints_the_result_folders_it_wrote(tmp_path, monkeypatch, capsys):
    "`hbi-repro reproduce` ends by naming the results folders its notebooks wrote (it printed a template path)."
    import hbi_repro.experiments as E
    res = tmp_path / "results"
    old = res / "table6" / "smoke"; old.mkdir(parents=True); (old / "a.json").write_text("{}")
    import os; os.utime(old / "a.json", (0, 0))                          # written long before: not this run's
    def fake(only, profile, parameters=None):
        assert only == ["T5"]                                           # " T5, " from the command line: spaces and empties dropped
        d = res / "table5" / profile; d.mkdir(parents=True); (d / "table.md").write_text("x")
        out = res / "executed" / f"run_table5-{profile}.ipynb"; out.parent.mkdir(parents=True); out.write_text("{}")
        return [out]
    monkeypatch.setattr(E, "reproduce_notebooks", fake)
    E.reproduce.__wrapped__(only=" T5, ", profile="smoke")
    out = capsys.readouterr().out
    assert str(res / "table5" / "smoke") in out and "table6" not in out
    with pytest.raises(ValueError, match="names no artifact"): E.reproduce.__wrapped__(only=" , ", profile="smoke")   # not "all"


def test_a_failing_notebook_ends_reproduce_with_its_cells_error(tmp_path, capsys):
    "The CLI prints the cell's exception and where the executed notebook (with the traceback) is, not papermill's traceback."
    import nbformat
    from hbi_repro.cli import main
    import hbi_repro.experiments as E
    nbs = tmp_path / "nbs"; nbs.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("profile = 'smoke'", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("raise FileNotFoundError('the paper profile needs real data: /x/msrvtt missing')")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "python3", "language": "python"}
    nbformat.write(nb, nbs / "run_table5.ipynb")
    with pytest.raises(E.NotebookFailed, match=r"run_table5\.ipynb stopped in cell 3 with FileNotFoundError: the paper profile needs real data"):   # cell 2: papermill's injected parameters
        E.reproduce_notebooks(["T5"], "smoke", nbs_dir=nbs, out_dir=tmp_path / "executed", progress=False)
    assert (tmp_path / "executed" / "run_table5-smoke.ipynb").exists()          # kept: it holds the traceback
    import unittest.mock as um
    real = E.reproduce_notebooks
    with um.patch.object(E, "reproduce_notebooks", lambda only, profile, parameters=None: real(only, profile, nbs_dir=nbs, out_dir=tmp_path / "executed", progress=False)):
        assert main(["reproduce", "--only", "T5", "--profile", "smoke"]) == 2
    err = capsys.readouterr().err
    assert "hbi-repro reproduce: NotebookFailed: run_table5.ipynb stopped in cell 3 with FileNotFoundError" in err and "Traceback" not in err


def test_synthetic_runs_are_reused_whatever_data_root_says():
    "The generated synthetic data never reads data.root, so two runs that differ only there are the same run (figure"
    "notebooks and the alignment study passed different roots and so trained separate copies); real datasets still differ."
    from hbi_repro.analysis import _same_run_config
    from hbi_repro.config import get_config, config_dict
    cfg = lambda *o: config_dict(get_config("synthetic", "T1/HBI-V2", overrides=list(o)))
    assert _same_run_config(cfg("data.root=data"), cfg("data.root=../data"))
    assert not _same_run_config(cfg("data.root=data"), cfg("data.root=../data", "data.seed=7"))
    real = lambda r: config_dict(get_config("paper", "T1/HBI-V2", overrides=["data.dataset=msrvtt", f"data.root={r}"]))
    assert not _same_run_config(real("data"), real("../data"))
