"""clown's package: ``pip install .`` gives the ``clownd`` command and the complete web UI."""

import os
import shutil
import sys

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))


class BuildWithAssets(build_py):
    """Build the web UI's npm assets when missing and ship etc/'s supervisord template."""

    def run(self):
        sys.path.insert(0, HERE)
        from clown.webui import build_assets  # the checkout's own helper, no dependencies

        build_assets()
        super().run()
        target = os.path.join(self.build_lib, "clown", "supervise")
        os.makedirs(target, exist_ok=True)
        shutil.copy(os.path.join(HERE, "etc", "supervisord.conf.in"), target)


def read_version() -> str:
    with open(os.path.join(HERE, "clown", "__init__.py")) as handle:
        for line in handle:
            if line.startswith("__version__"):
                return line.split('"')[1]
    raise RuntimeError("no __version__")


setup(
    name="clown",
    version=read_version(),
    description="A host service that runs and manages CLI coding agents: profiles, terminals, "
                "sessions, a key-holding metering proxy and a web UI.",
    long_description=open(os.path.join(HERE, "README.md")).read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["clown", "clown.*"]),
    include_package_data=False,
    package_data={
        "clown": [
            "static/*.html", "static/*.css", "static/js/*.js", "static/vendor/*",
            "store/migrations/*.sql",
            "catalog/builtin/*", "catalog/builtin/*/*",
        ],
    },
    install_requires=[
        "tornado>=6.6",
        "psutil>=5.9",
        "supervisor>=4.2",
        "ptyprocess>=0.7",
        "marshmallow>=4.0",
        "apispec>=6.0",
        "orjson>=3.8",
    ],
    extras_require={
        "test": [
            "pytest>=8",
            "pytest-timeout>=2.3",
            "websockets>=13",
            "pyte>=0.8",
            "playwright>=1.40",
            "openapi-spec-validator>=0.7",
            "terminado>=0.18",
        ],
    },
    entry_points={"console_scripts": ["clownd=clown.daemon.clownd:main"]},
    cmdclass={"build_py": BuildWithAssets},
)
