"""Build of the optional C fast path (everything else is in pyproject.toml).

The extension is optional: where it cannot be compiled (no C compiler or Python headers),
installation still succeeds and the DNS server answers through the pure-Python path.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "dnsserver._fastpath",
            # Answering one query (from a name blob too), batching queries with
            # recvmmsg/sendmmsg (and the module), the answering thread's time slice; the
            # header is what they share. The Makefile's set-up stamp and MANIFEST.in list
            # the same files.
            [
                "dnsserver/_fastpath_answer.c",
                "dnsserver/_fastpath_blob.c",
                "dnsserver/_fastpath_plain.c",
                "dnsserver/_fastpath_batch.c",
                "dnsserver/_fastpath_sched.c",
            ],
            depends=["dnsserver/_fastpath.h"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,
        )
    ]
)
