"""Build-time assets of the web UI: the terminal's JavaScript from npm.

The web UI itself (``clown/static/``) is plain files committed to the repository. The
terminal emulator (``@xterm/xterm`` and ``@xterm/addon-fit``) is not committed: npm installs
it from ``clown/webui/package-lock.json`` and ``build.mjs`` copies its browser builds into
``clown/static/vendor/`` (git-ignored). :func:`build_assets` does both; the package build
(``setup.py``'s ``build_py`` hook) calls it so ``pip install .`` from a clean checkout ships
a complete UI that works offline.
"""

import logging
import os
import shutil
import subprocess
from pathlib import Path

log = logging.getLogger(__name__)

WEBUI_DIR = Path(__file__).resolve().parent
STATIC_DIR = WEBUI_DIR.parent / "static"
VENDOR_DIR = STATIC_DIR / "vendor"

#: Files build.mjs writes; the UI needs all of them.
VENDOR_FILES = ("xterm.js", "xterm.css", "addon-fit.js")


class AssetBuildError(RuntimeError):
    """npm or node is missing, or one of the build steps failed."""


def assets_built():
    """Return True when every vendored file the UI loads is present."""
    return all((VENDOR_DIR / name).is_file() for name in VENDOR_FILES)


def build_assets(force=False):
    """Install the UI's npm dependencies and copy them into ``clown/static/vendor/``.

    Does nothing and returns False when the assets are already there (``vendor/xterm.js``
    and the rest exist), unless ``force`` is true. Otherwise runs, in ``clown/webui/``,
    ``npm ci`` (``npm install`` when there is no ``package-lock.json``), then
    ``node build.mjs``, and returns True.

    Needs ``npm`` and ``node`` on PATH (``CLOWN_NPM`` / ``CLOWN_NODE`` name other binaries)
    and the npm registry or a warm npm cache. Raises :class:`AssetBuildError` saying what
    failed; npm's own output goes to the caller's stdout/stderr.
    """
    if assets_built() and not force:
        return False
    npm = _find_binary("CLOWN_NPM", "npm")
    node = _find_binary("CLOWN_NODE", "node")
    install = "ci" if (WEBUI_DIR / "package-lock.json").is_file() else "install"
    _run([npm, install, "--no-audit", "--no-fund"])
    _run([node, "build.mjs"])
    if not assets_built():
        missing = [n for n in VENDOR_FILES if not (VENDOR_DIR / n).is_file()]
        raise AssetBuildError(f"web UI build finished but {', '.join(missing)} missing in {VENDOR_DIR}")
    return True


def _find_binary(env_var, name):
    path = os.environ.get(env_var) or shutil.which(name)
    if not path:
        raise AssetBuildError(
            f"building the web UI needs {name!r} on PATH (or {env_var}); "
            f"install Node.js and npm, or build the assets elsewhere with "
            f"`npm ci && node build.mjs` in {WEBUI_DIR}"
        )
    return path


def _run(argv):
    log.info("web UI build: %s (in %s)", " ".join(argv), WEBUI_DIR)
    try:
        subprocess.run(argv, cwd=WEBUI_DIR, check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise AssetBuildError(f"web UI build step {' '.join(argv)!r} failed: {exc}") from exc

