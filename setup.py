"""Installs the exported package `hbi_repro` in development mode (`pip install -e . --no-deps`).
Metadata is read from settings.ini (nbdev 2 convention); the pinned environment is requirements.txt."""
from configparser import ConfigParser
import setuptools

cfg = ConfigParser(delimiters=["="])
cfg.read("settings.ini", encoding="utf-8")
cfg = cfg["DEFAULT"]
setuptools.setup(
    name=cfg["lib_name"], version=cfg["version"], description=cfg["description"],
    author=cfg["author"], license="Apache-2.0", python_requires=">=" + cfg["min_python"],
    packages=setuptools.find_packages(include=["hbi_repro", "hbi_repro.*"]),
    include_package_data=True, zip_safe=False,
    entry_points={"console_scripts": cfg["console_scripts"].split(),
                  "nbdev": [f"{cfg['lib_path']}={cfg['lib_path']}._modidx:d"]},
)
