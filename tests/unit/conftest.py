"""Make ``ansible_collections.payments.deploy`` importable when pytest runs from a plain checkout.

Under ``ansible-test units`` the checkout already sits at ``ansible_collections/payments/deploy`` and nothing is done.
"""

from __future__ import annotations

import atexit
import shutil
import sys
import tempfile
from pathlib import Path

COLLECTION_ROOT = Path(__file__).resolve().parents[2]


def _collections_dir() -> Path:
    if COLLECTION_ROOT.parent.name == "payments" and COLLECTION_ROOT.parent.parent.name == "ansible_collections":
        return COLLECTION_ROOT.parents[2]
    tmp = Path(tempfile.mkdtemp(prefix="payments-deploy-collections-"))
    atexit.register(shutil.rmtree, tmp, True)
    (tmp / "ansible_collections" / "payments").mkdir(parents=True)
    (tmp / "ansible_collections" / "payments" / "deploy").symlink_to(COLLECTION_ROOT)
    return tmp


COLLECTIONS_DIR = _collections_dir()
if str(COLLECTIONS_DIR) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS_DIR))
