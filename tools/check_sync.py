"""CI check: notebooks are clean (`nbdev_clean` changes nothing) and the package is in sync with them
(`nbdev_export` changes nothing). Exits 1 and names the files that differ."""
import hashlib, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

def snapshot():
    files = sorted(ROOT.glob("nbs/**/*.ipynb")) + sorted(ROOT.glob("hbi_repro/**/*.py"))
    return {f.relative_to(ROOT): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}

def check(step, cmd):
    before = snapshot()
    subprocess.run([str(BIN / cmd[0]), *cmd[1:]], cwd=ROOT, check=True)
    after = snapshot()
    changed = sorted(str(k) for k in set(before) | set(after) if before.get(k) != after.get(k))
    if changed:
        print(f"FAILED: {step} changed {len(changed)} file(s): " + ", ".join(changed), file=sys.stderr)
        return False
    print(f"ok: {step}")
    return True

ok = check("notebooks are clean (nbdev_clean)", ["nbdev_clean"])
ok &= check("package in sync with notebooks (nbdev_export)", ["nbdev_export"])
sys.exit(0 if ok else 1)
