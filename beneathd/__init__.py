"""beneathd: file operations strictly beneath a root, in-process or through a per-project daemon.

The code lives in the top-level ``daemon/``, ``client/`` and ``protocol/`` folders, mapped
into this namespace by ``pyproject.toml``; this folder holds only this file and, after an
editable install, the compiled ``_native`` extension.
"""

from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)
__version__ = "0.1.0"
