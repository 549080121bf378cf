"""Build of the optional C fast path (everything else is in pyproject.toml).

The extension is optional: where it cannot be compiled (no C compiler or Python headers),
installation still succeeds and the DNS server answers through the pure-Python path.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "dnsserver._fastpath",
            ["dnsserver/_fastpath.c"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,
        )
    ]
)
