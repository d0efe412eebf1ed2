"""A search killed with SIGKILL in the middle of a checkpoint write resumes and ends exactly as an
uninterrupted one (issue 15 item 1), and resume skips missing or cut checkpoints."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from det_autoaug.utils.checkpoint import (enable_crash_safe_checkpoints, find_complete_checkpoint,
                                          is_complete_checkpoint)

from det_helpers import make_digits

TESTS = Path(__file__).resolve().parent

# A 2-epoch search run in a child process. ``kill`` mode writes half of the second checkpoint,
# flushes it to disk, drops a marker and sleeps until the test kills it. max_keep_ckpts=1: the
# hook rotates epoch_1.pth out at that save, the case where mmengine alone keeps no checkpoint.
CHILD = textwrap.dedent('''
    import io, json, os, sys, time
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    import torch
    torch.set_num_threads(1)
    from mmengine.config import Config
    from mmengine.runner import Runner
    import det_autoaug.mmdet_plugins  # noqa: F401  (registers the hook; makes checkpoints crash-safe)
    from det_helpers import search_runner_cfg

    data, work_dir, mode = sys.argv[1:4]
    if mode == 'kill':
        real_save, saves = torch.save, []

        def paced_save(obj, f, *args, **kwargs):
            if not (isinstance(obj, dict) and 'state_dict' in obj):
                return real_save(obj, f, *args, **kwargs)
            saves.append(getattr(f, 'name', f))
            if len(saves) < 2:
                return real_save(obj, f, *args, **kwargs)
            buffer = io.BytesIO()
            real_save(obj, buffer, *args, **kwargs)
            payload = buffer.getvalue()
            f.write(payload[:len(payload) // 2])
            f.flush()
            os.fsync(f.fileno())
            Path(work_dir, 'mid_save').write_text(str(saves[-1]))
            time.sleep(600)
        torch.save = paced_save
    cfg = search_runner_cfg(Path(data), Path(work_dir), max_epochs=2, resume=(mode == 'resume'))
    cfg['default_hooks']['checkpoint'] = dict(type='CheckpointHook', interval=1, max_keep_ckpts=1)
    runner = Runner.from_cfg(Config(cfg))
    runner.train()
    hook = next(h for h in runner.hooks if type(h).__name__ == 'PolicySearchHook')
    torch.save(dict(alpha=hook.policy.alpha.detach(), beta=hook.policy.beta.detach(), steps=hook.search_steps,
                    weights=runner.model.state_dict()), Path(work_dir) / 'final.pt')
''')


def _child(tmp_path: Path, data: Path, work_dir: Path, mode: str) -> subprocess.Popen:
    script = tmp_path / 'child.py'
    script.write_text(CHILD.format(tests=str(TESTS)))
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
    return subprocess.Popen([sys.executable, str(script), str(data), str(work_dir), mode], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(process: subprocess.Popen, timeout: float = 300) -> None:
    out, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, out[-4000:]


def test_sigkill_inside_a_checkpoint_write_then_resume_ends_as_uninterrupted(tmp_path):
    data = make_digits(tmp_path / 'digits', train=8, val=2, test=2)
    _finish(_child(tmp_path, data, tmp_path / 'straight', 'straight'))
    killed_dir = tmp_path / 'killed'
    killed = _child(tmp_path, data, killed_dir, 'kill')
    deadline = time.monotonic() + 300
    while not (killed_dir / 'mid_save').is_file():
        assert killed.poll() is None, f'the run ended before its second save:\n{killed.communicate()[0][-4000:]}'
        assert time.monotonic() < deadline, 'the second save never started'
        time.sleep(0.05)
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait(timeout=60)
    assert killed.returncode == -signal.SIGKILL

    # The write was cut in the middle: only its temporary file holds it; epoch 1 is still whole.
    partial = Path((killed_dir / 'mid_save').read_text())
    assert partial == killed_dir / 'epoch_2.pth.part'
    assert partial.is_file() and not is_complete_checkpoint(partial)
    assert not (killed_dir / 'epoch_2.pth').exists()
    assert is_complete_checkpoint(killed_dir / 'epoch_1.pth')
    assert find_complete_checkpoint(killed_dir) == str(killed_dir / 'epoch_1.pth')

    _finish(_child(tmp_path, data, killed_dir, 'resume'))
    a = torch.load(tmp_path / 'straight' / 'final.pt', weights_only=True)
    b = torch.load(killed_dir / 'final.pt', weights_only=True)
    assert a['steps'] == b['steps']
    assert torch.equal(a['alpha'], b['alpha']) and torch.equal(a['beta'], b['beta'])
    assert a['weights'].keys() == b['weights'].keys()
    assert all(torch.equal(a['weights'][k], b['weights'][k]) for k in a['weights'])
    pa = json.loads((tmp_path / 'straight' / 'policy.json').read_text())
    pb = json.loads((killed_dir / 'policy.json').read_text())
    assert pa['probs'] == pb['probs'] and pa['trajectory'] == pb['trajectory']
    # The resumed run saved epoch 2 over the cut file and rotated epoch 1 out, as usual.
    assert sorted(p.name for p in killed_dir.glob('epoch_*')) == ['epoch_2.pth']


def _checkpoint(path: Path, value: float) -> Path:
    torch.save({'state_dict': {'w': torch.full((64, 64), value)}}, path)
    return path


def test_resume_skips_a_missing_cut_or_unnamed_checkpoint(tmp_path):
    one, two = _checkpoint(tmp_path / 'epoch_1.pth', 1.0), _checkpoint(tmp_path / 'epoch_2.pth', 2.0)
    pointer = tmp_path / 'last_checkpoint'
    assert find_complete_checkpoint(tmp_path) == str(two)       # no last_checkpoint: the newest
    pointer.write_text(str(one))
    assert find_complete_checkpoint(tmp_path) == str(one)       # a complete one named: that one
    for cut in ('', str(tmp_path / 'epoch_'), str(tmp_path / 'epoch_3.pth')):   # cut or missing
        pointer.write_text(cut)
        assert find_complete_checkpoint(tmp_path) == str(two)
    data = two.read_bytes()
    for size in (0, 100, len(data) // 2, len(data) - 1):
        two.write_bytes(data[:size])
        assert not is_complete_checkpoint(two)
        pointer.write_text(str(two))
        assert find_complete_checkpoint(tmp_path) == str(one)
    one.write_bytes(b'')
    # Nothing complete: the named file is left to mmengine to load or refuse; none named, none.
    assert find_complete_checkpoint(tmp_path) == str(two)
    pointer.write_text(str(tmp_path / 'epoch_3.pth'))
    assert find_complete_checkpoint(tmp_path) is None
    pointer.unlink()
    assert find_complete_checkpoint(tmp_path) is None


class _Unpicklable:
    def __reduce__(self):
        raise RuntimeError('not picklable')


def test_saves_are_atomic_and_runner_uses_the_safe_functions(tmp_path):
    from mmengine.hooks import CheckpointHook
    from mmengine.runner import runner as runner_module
    enable_crash_safe_checkpoints()
    enable_crash_safe_checkpoints()   # idempotent: wrapped once
    assert runner_module.find_latest_checkpoint is find_complete_checkpoint
    assert runner_module.save_checkpoint.func.__name__ == '_atomic_save'
    assert runner_module.save_checkpoint.args[0].__module__ == 'mmengine.runner.checkpoint'
    assert CheckpointHook._save_checkpoint_with_step.__module__ == 'det_autoaug.utils.checkpoint'
    target = tmp_path / 'sub' / 'epoch_1.pth'
    runner_module.save_checkpoint({'state_dict': {'w': torch.ones(3)}}, str(target))
    assert is_complete_checkpoint(target) and [p.name for p in target.parent.iterdir()] == ['epoch_1.pth']
    assert torch.equal(torch.load(target, weights_only=True)['state_dict']['w'], torch.ones(3))
    with pytest.raises(RuntimeError, match='not picklable'):   # the old file stays, no temporary file
        runner_module.save_checkpoint({'state_dict': {'w': _Unpicklable()}}, str(target))
    assert [p.name for p in target.parent.iterdir()] == ['epoch_1.pth'] and is_complete_checkpoint(target)
