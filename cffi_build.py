"""Build ``beneathd._native`` (cffi API mode, out of line) from the C in ``native/``.

The C is the product's security core (the openat2 resolver and everything that acts on
what it returns); it lives in ``native/*.c`` so that compilers, sanitizers and readers see
real C. The cffi ``cdef`` is read from ``native/beneathd.h`` (between its cdef markers), so
each constant and prototype is written once.
"""

from __future__ import annotations

import os
import re

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
NATIVE = "native"
SOURCES = ["resolve.c", "ops.c", "replace.c", "tree.c", "landlock.c"]
CFLAGS = ["-D_GNU_SOURCE", "-O2", "-Wall", "-Wextra", "-fvisibility=hidden"]


def cdef() -> str:
    """The cffi declarations: the public header's cdef section, plus the test hook."""
    with open(os.path.join(HERE, NATIVE, "beneathd.h"), encoding="utf-8") as f:
        text = f.read()
    m = re.search(r"/\* cdef: begin \*/\n(.*?)/\* cdef: end \*/", text, re.S)
    if m is None:
        raise RuntimeError("native/beneathd.h has no cdef section")
    # bn_py_hook is called from native/*.c, so it must be visible to them ("Python+C")
    return m.group(1) + '\nextern "Python+C" void bn_py_hook(int stage);\n'


ffibuilder = FFI()
ffibuilder.cdef(cdef())
ffibuilder.set_source(
    "beneathd._native",
    '#include "beneathd.h"\n',
    sources=[f"{NATIVE}/{s}" for s in SOURCES],
    include_dirs=[NATIVE],
    extra_compile_args=CFLAGS,
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
