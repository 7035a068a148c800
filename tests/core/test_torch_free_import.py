"""`import im_data` stays torch-free: the loss, the PyTorch datasets and the Trainer mixin are separate modules."""

from __future__ import annotations

import subprocess
import sys


def test_import_im_data_does_not_import_torch():
    code = ("import sys, im_data, im_data.dataset, im_data.encode, im_data.shards\n"
            "print(sorted(m for m in ('torch', 'transformers', 'trl') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]"
