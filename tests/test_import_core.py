"""The ops, the policies and the search core import and run without OpenMMLab, and importing them
imports none of it where it is installed; det_autoaug.mmdet_plugins registers the plugins and makes
checkpoints safe to resume, and ``custom_imports=dict(imports=['det_autoaug'])`` still does both."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OPENMMLAB = ('mmdet', 'mmengine', 'mmcv', 'pycocotools')

# A None entry in sys.modules makes ``import mmdet`` raise ModuleNotFoundError and
# ``importlib.util.find_spec('mmdet')`` return None: the package sees a machine without OpenMMLab.
SCRIPT = f'''
import sys
for name in {OPENMMLAB!r}:
    sys.modules[name] = None
import numpy as np
import torch
import det_autoaug
import det_autoaug.search.core
import det_autoaug.search.grad_buffers
from det_autoaug.ops import apply_op, get_space, sample_params
from det_autoaug.ops.cv2_ops import apply_op_np
from det_autoaug.policy.policy import apply_chains_torch, build_policy, run_chain_np
from det_autoaug.search import DDASPolicy, FlatGradBuffers
from det_autoaug.search.searchers import DDASSearcher, TorchSearchContext

assert not det_autoaug.WITH_OPENMMLAB and 'mmdet_plugins' not in det_autoaug.__all__
try:
    import det_autoaug.mmdet_plugins
except ImportError as e:
    assert any(name in str(e) for name in {OPENMMLAB!r}), e
else:
    raise AssertionError('det_autoaug.mmdet_plugins imported without mmdet')

boxes = [torch.tensor([[2.0, 2.0, 20.0, 20.0]]), torch.zeros(0, 4)]
images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
params = sample_params('Rotate', 2, 32, 32, boxes, generator=torch.Generator().manual_seed(0))
assert apply_op('Rotate', images, boxes, 15.0, params).images.shape == images.shape
for op in ('Rotate', 'TranslateX', 'Invert'):   # the cv2 kernels that once called mmcv
    out, _, _ = apply_op_np(op, images[0].permute(1, 2, 0).numpy(), boxes[0].numpy(), 0.3,
                            sample_params(op, 1, 32, 32, boxes[:1], generator=torch.Generator().manual_seed(1)))
    assert out.shape == (32, 32, 3)

policy = build_policy('autoaug_det_v0')
chains = [policy.sample_chain(torch.Generator().manual_seed(i)) for i in range(2)]
apply_chains_torch(images, boxes, chains, torch.Generator().manual_seed(2))
run_chain_np(images[0].permute(1, 2, 0).numpy(), boxes[0].numpy(), chains[0], torch.Generator().manual_seed(3))

ddas = DDASPolicy(len(get_space('det_default')))
proposal = ddas.sample(generator=torch.Generator().manual_seed(0))
before = ddas.probs().detach().clone()
ddas.update(proposal, torch.randn(ddas.num_policies, dtype=torch.float64), 0.0)
assert not torch.equal(before, ddas.probs().detach())
FlatGradBuffers([torch.nn.Parameter(torch.zeros(3))], 2)
DDASSearcher(get_space('det_default'))
leaked = sorted(m for m in sys.modules if m.split('.')[0] in {OPENMMLAB!r} and sys.modules[m] is not None)
assert not leaked, leaked
print('ok')
'''


def run_python(script: str) -> None:
    proc = subprocess.run([sys.executable, '-c', script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip().endswith('ok'), proc.stderr[-3000:]


def test_core_imports_and_runs_without_openmmlab():
    run_python(SCRIPT)


def test_the_core_imports_no_openmmlab_where_it_is_installed():
    """Issue 17 item 2's acceptance command, with the policies added."""
    run_python("import sys, det_autoaug.ops, det_autoaug.search, det_autoaug.policy; "
               "assert not any(m.split('.')[0] in ('mmdet', 'mmengine', 'mmcv') for m in sys.modules); print('ok')")


# enable_safe_resume wraps mmengine's save_checkpoint and replaces HistoryBuffer's pickling.
CHECKS = '''
def safe_resume_installed():
    from mmengine.logging import HistoryBuffer
    from mmengine.runner import runner
    return (getattr(runner.save_checkpoint, '_det_autoaug_atomic', False)
            and getattr(HistoryBuffer.__getstate__, '__module__', None) == 'det_autoaug.utils.checkpoint')


def registered():
    from mmdet.registry import MODELS, TRANSFORMS
    from mmengine.registry import HOOKS
    return all(registry.get(name) is not None for name, registry in (
        ('PolicyAugment', TRANSFORMS), ('DARotate', TRANSFORMS), ('BatchPolicyAugment', MODELS),
        ('PolicySearchHook', HOOKS)))
'''


def test_plain_import_stays_light_and_mmdet_plugins_registers():
    run_python(CHECKS + f'''
import sys
import det_autoaug
assert det_autoaug.WITH_OPENMMLAB and 'mmdet_plugins' not in det_autoaug.__all__
leaked = sorted(m for m in sys.modules if m.split('.')[0] in {OPENMMLAB!r})
assert not leaked, leaked
assert not safe_resume_installed(), 'import det_autoaug patched mmengine'
import det_autoaug.mmdet_plugins
assert registered() and safe_resume_installed()
print('ok')
''')


def test_custom_imports_det_autoaug_still_registers(tmp_path):
    """Configs that name the package, not det_autoaug.mmdet_plugins: mmengine's loader imports it."""
    config = tmp_path / 'user_config.py'
    config.write_text("custom_imports = dict(imports=['det_autoaug'], allow_failed_imports=False)\n")
    run_python(CHECKS + f'''
from mmengine.config import Config
Config.fromfile({str(config)!r})
import det_autoaug
assert det_autoaug.WITH_OPENMMLAB and 'mmdet_plugins' in det_autoaug.__all__
assert registered() and safe_resume_installed()
print('ok')
''')


def test_building_the_search_hook_makes_resume_safe():
    run_python(CHECKS + '''
from det_autoaug.search.hook import PolicySearchHook
assert not safe_resume_installed()
PolicySearchHook()
assert safe_resume_installed()
print('ok')
''')
