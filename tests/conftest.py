"""Suite-wide settings: the anchor signing key lives in a temporary directory, not in $HOME.

`cfa run` signs audit anchors by default with the key at ``$CFA_ANCHOR_KEY`` (else
``~/.config/cfa/anchor.key``, created on first use). Tests and the subprocesses they start
inherit this environment, so the suite never writes a key into the user's home directory.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

if "CFA_ANCHOR_KEY" not in os.environ:
    _keys = Path(tempfile.mkdtemp(prefix="cfa-test-keys-"))
    _keys.chmod(0o700)
    os.environ["CFA_ANCHOR_KEY"] = str(_keys / "anchor.key")

from store_backends import (  # noqa: F401  (the backend fixtures)
    module_store_target,
    pg_schema,
    store_target,
)
