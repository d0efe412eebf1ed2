"""The ops, the policies' torch path and the search core import and run without OpenMMLab."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

BLOCKED = '''
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('mmdet', 'mmengine', 'mmcv', 'pycocotools'):
            raise ModuleNotFoundError(f'blocked for the test: {name}')
        return None
sys.meta_path.insert(0, Block())
import importlib.util
importlib.util.find_spec = (lambda f: lambda name, *a: None if name.split('.')[0] in
                            ('mmdet', 'mmengine', 'mmcv', 'pycocotools') else f(name, *a))(importlib.util.find_spec)
'''

SCRIPT = BLOCKED + '''
import torch
import det_autoaug
from det_autoaug.ops import apply_op, sample_params, get_space
from det_autoaug.policy.policy import apply_chains_torch, build_policy
from det_autoaug.search import DDASPolicy, FlatGradBuffers
from det_autoaug.search.searchers import DDASSearcher, TorchSearchContext
assert not det_autoaug.WITH_OPENMMLAB
assert not any(m.split('.')[0] in ('mmdet', 'mmengine', 'mmcv') for m in sys.modules), sorted(sys.modules)
img = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
boxes = [torch.tensor([[2.0, 2.0, 20.0, 20.0]]), torch.zeros(0, 4)]
params = sample_params('Rotate', 2, 32, 32, boxes, generator=torch.Generator().manual_seed(0))
out = apply_op('Rotate', img, boxes, 15.0, params)
assert out.images.shape == img.shape
policy = DDASPolicy(len(get_space('det_default')))
proposal = policy.sample(generator=torch.Generator().manual_seed(0))
policy.update(proposal, torch.randn(3), 0.0)
build_policy('autoaug_det_v0')
print('ok')
'''


def test_core_imports_and_runs_without_openmmlab():
    proc = subprocess.run([sys.executable, '-c', SCRIPT], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip().endswith('ok'), proc.stderr[-3000:]


def test_with_openmmlab_the_package_registers_its_plugins():
    import det_autoaug  # noqa: F401
    from mmdet.registry import TRANSFORMS
    from mmengine.registry import HOOKS
    assert det_autoaug.WITH_OPENMMLAB
    assert TRANSFORMS.get('PolicyAugment') is not None and HOOKS.get('DDASSearchHook') is not None
