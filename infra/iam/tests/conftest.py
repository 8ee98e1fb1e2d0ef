"""The checker's modules are plain files in infra/iam (and the offline
transform in infra/tests): put both on the import path."""

import sys
from pathlib import Path

IAM = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(IAM))
sys.path.insert(0, str(IAM.parent / "tests"))
