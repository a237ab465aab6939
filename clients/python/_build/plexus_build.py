"""A PEP 517 build backend that needs nothing but the standard library, so that
``pip install ./clients/python`` works without a package index (setuptools before 70.1
needs the ``wheel`` package to build one). It builds a pure-Python wheel of ``plexus_relay``
and an sdist from the metadata in ``pyproject.toml`` ([project]: name, version,
description, requires-python, readme, license, classifiers, scripts)."""

from __future__ import annotations

import base64
import hashlib
import importlib
import io
import os
import re
import tarfile
import zipfile
from typing import Any, Dict, List, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "plexus_relay"


def _project() -> Dict[str, Any]:
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        raw = f.read()
    try:
        tomllib = importlib.import_module("tomllib")  # Python 3.11+
        return dict(tomllib.loads(raw.decode("utf-8"))["project"])
    except ImportError:  # 3.9, 3.10: the few keys this file uses, one per line
        text = raw.decode("utf-8")
        out: Dict[str, Any] = {"scripts": {}}
        section = ""
        for line in text.splitlines():
            head = re.match(r"^\[(.+)\]\s*$", line)
            if head:
                section = head.group(1)
                continue
            kv = re.match(r'^([A-Za-z0-9_-]+)\s*=\s*"(.*)"\s*$', line)
            if kv and section == "project":
                out[kv.group(1)] = kv.group(2)
            elif kv and section == "project.scripts":
                out["scripts"][kv.group(1)] = kv.group(2)
        return out


def _dist_name(p: Dict[str, Any]) -> str:
    return re.sub(r"[-_.]+", "_", p["name"]).lower()


def _metadata(p: Dict[str, Any]) -> str:
    lines = ["Metadata-Version: 2.1", f"Name: {p['name']}", f"Version: {p['version']}"]
    if p.get("description"):
        lines.append(f"Summary: {p['description']}")
    if p.get("requires-python"):
        lines.append(f"Requires-Python: {p['requires-python']}")
    lic = p.get("license")
    if isinstance(lic, dict) and lic.get("text"):
        lines.append(f"License: {lic['text']}")
    for c in p.get("classifiers", []) or []:
        lines.append(f"Classifier: {c}")
    readme = p.get("readme")
    body = ""
    if isinstance(readme, str) and os.path.exists(os.path.join(ROOT, readme)):
        lines.append("Description-Content-Type: text/markdown")
        with open(os.path.join(ROOT, readme), encoding="utf-8") as f:
            body = f.read()
    return "\n".join(lines) + "\n\n" + body


def _package_files() -> List[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(os.path.join(ROOT, PACKAGE)):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        for name in sorted(filenames):
            if name.endswith(".py") or name == "py.typed":
                out.append(os.path.relpath(os.path.join(dirpath, name), ROOT))
    return sorted(out)


def _record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def build_wheel(wheel_directory: str, config_settings: Optional[Dict[str, Any]] = None, metadata_directory: Optional[str] = None) -> str:
    """PEP 517: writes ``<name>-<version>-py3-none-any.whl`` into ``wheel_directory``."""
    p = _project()
    name = f"{_dist_name(p)}-{p['version']}"
    info = f"{name}.dist-info"
    files: Dict[str, bytes] = {}
    for rel in _package_files():
        with open(os.path.join(ROOT, rel), "rb") as f:
            files[rel.replace(os.sep, "/")] = f.read()
    files[f"{info}/METADATA"] = _metadata(p).encode("utf-8")
    files[f"{info}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: plexus_build\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    scripts = p.get("scripts") or {}
    if scripts:
        eps = "[console_scripts]\n" + "".join(f"{k} = {v}\n" for k, v in scripts.items())
        files[f"{info}/entry_points.txt"] = eps.encode("utf-8")
    record = [_record_line(path, data) for path, data in files.items()] + [f"{info}/RECORD,,"]
    files[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode("utf-8")
    filename = f"{name}-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, filename), "w", zipfile.ZIP_DEFLATED) as z:
        for path, data in files.items():
            z.writestr(zipfile.ZipInfo(path, (1980, 1, 1, 0, 0, 0)), data, zipfile.ZIP_DEFLATED)
    return filename


def build_sdist(sdist_directory: str, config_settings: Optional[Dict[str, Any]] = None) -> str:
    """PEP 517: writes ``<name>-<version>.tar.gz`` (package, tests, build backend, metadata)."""
    p = _project()
    name = f"{_dist_name(p)}-{p['version']}"
    filename = f"{name}.tar.gz"
    rels = _package_files() + ["pyproject.toml", "README.md", os.path.join("_build", "plexus_build.py")]
    for dirpath, _dirs, filenames in os.walk(os.path.join(ROOT, "tests")):
        rels += [os.path.relpath(os.path.join(dirpath, n), ROOT) for n in filenames if n.endswith(".py")]
    pkg_info = _metadata(p).encode("utf-8")
    with tarfile.open(os.path.join(sdist_directory, filename), "w:gz", format=tarfile.PAX_FORMAT) as tar:
        for rel in sorted(rels):
            tar.add(os.path.join(ROOT, rel), arcname=f"{name}/{rel}")
        ti = tarfile.TarInfo(f"{name}/PKG-INFO")
        ti.size = len(pkg_info)
        tar.addfile(ti, io.BytesIO(pkg_info))
    return filename


def get_requires_for_build_wheel(config_settings: Optional[Dict[str, Any]] = None) -> List[str]:
    """PEP 517: nothing to install."""
    return []


def get_requires_for_build_sdist(config_settings: Optional[Dict[str, Any]] = None) -> List[str]:
    """PEP 517: nothing to install."""
    return []
