"""What a person sees (issue 14 items 6 and 7): the policy plot, the hook's log and progress lines,
browse_policy's panels and data errors, and the plain-numpy/PyTorch DetPolicy with the README snippet."""
from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.logging import MessageHub

from det_autoaug.ops.spaces import get_space
from det_autoaug.ops.table import OPS
from det_autoaug.policy import (ChainStep, DetPolicy, Policy, apply_chain_np, build_policy, describe_steps,
                                run_chain_np, run_chain_traced, save_policy_file)
from det_autoaug.search.hook import PolicySearchHook
from det_autoaug.search.plot import SearchProgress, entry_colours, format_seconds, plot_policy, top_entries
from det_autoaug.search.searchers import SEARCHERS, build_searcher

from det_helpers import ROOT, make_digits

README_MARKER = '<!-- snippet: plain-pytorch'


# ----------------------------------------------------------------------------- the policy plot

def _entry_lines(fig):
    ax_p = fig.axes[0]
    return [line for line in ax_p.get_lines() if line.get_linestyle() != '--']


@pytest.mark.parametrize('n', [4, 36, 67])
def test_plot_of_a_single_snapshot_is_readable(n):
    probs = np.random.default_rng(0).dirichlet(np.ones(n))
    labels = [f'op{i}' for i in range(n)]
    fig = plot_policy([1], labels, [probs.tolist()], [0.4], searcher='ddas', num_steps=7)
    lines = _entry_lines(fig)
    assert len(lines) == n
    assert all(line.get_marker() not in (None, '', 'None') for line in lines), 'a single point needs a marker'
    colours = {tuple(np.round(line.get_color(), 6)) for line in lines}
    assert len(colours) == n, 'entry colours repeat'
    uniform = [line for line in fig.axes[0].get_lines() if line.get_linestyle() == '--']
    assert len(uniform) == 1 and np.allclose(uniform[0].get_ydata(), 1.0 / n)
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any(t.startswith(f'uniform 1/{n}') for t in legend)
    named = [t for t in legend if t.startswith('op')]
    assert len(named) == min(n, 12) and named[0].startswith(labels[int(np.argmax(probs))])
    assert fig.axes[1].get_ylim() == (0.0, 1.0)
    assert fig.axes[1].get_lines()[0].get_marker() not in (None, '', 'None')
    title = fig._suptitle.get_text()
    assert 'ddas' in title and '7 steps' in title


def test_plot_checks_shapes_and_saves(tmp_path):
    with pytest.raises(ValueError, match='probs has shape'):
        plot_policy([1, 2], ['a', 'b'], [[0.5, 0.5]], [0.3, 0.3])
    with pytest.raises(ValueError, match='apply_probs'):
        plot_policy([1], ['a', 'b'], [[0.5, 0.5]], [0.3, 0.3])
    plot_policy([], ['a', 'b'], [], [], searcher='dada', path=tmp_path / 'empty.png')
    assert (tmp_path / 'empty.png').stat().st_size > 1000
    assert len({tuple(c) for c in entry_colours(67)}) == 67


def _hub(name: str, max_iters: int, max_epochs: int) -> MessageHub:
    hub = MessageHub.get_instance(name)  # the newest instance is the current one
    hub.update_info('max_iters', max_iters)
    hub.update_info('max_epochs', max_epochs)
    return hub


def _run_log(hook: PolicySearchHook, hub: MessageHub, iters: int) -> None:
    for i in range(iters):
        hub.update_info('iter', i)  # as RuntimeInfoHook does before each step
        hook.searcher.policy.alpha.data[i % len(hook.entries)] += 0.05  # the policy moves
        hook._log()
        hook.search_steps += 1


def test_one_epoch_search_plots_points_within_the_epoch_and_prints_progress(tmp_path, monkeypatch):
    lines = []
    monkeypatch.setattr('det_autoaug.search.hook.print_log', lambda msg, **kw: lines.append(msg))
    hook = PolicySearchHook(space='det_default')
    hub = _hub('test_user_view_one_epoch', max_iters=40, max_epochs=1)
    _run_log(hook, hub, 40)
    assert hook.searcher.trajectory == [], 'the plot-only points must not enter the trajectory'
    hook.searcher.snapshot(1)  # what after_train_epoch / after_train record for one epoch
    fig = hook.plot(tmp_path / 'p.png')
    assert (tmp_path / 'p.png').stat().st_size > 1000
    entry_lines = _entry_lines(fig)
    assert len(entry_lines) == len(hook.entries)
    assert all(len(line.get_xdata()) == 20 for line in entry_lines), 'one point every max(1, 40 // 20) iterations'
    assert list(entry_lines[0].get_xdata())[-1] == 40 and fig.axes[0].get_xlabel() == 'iteration'
    assert '40 steps' in fig._suptitle.get_text()
    # log: names in the infos, ranked scalars for the backends, a progress line every tenth
    assert re.fullmatch(r'\S+=0\.\d{4}', hub.get_info('ddas_top1'))
    assert 'train/ddas_top1_prob' in hub.log_scalars
    assert len(lines) == 10 and lines[0].startswith('search: iter 4/40, eta ')
    assert lines[-1].startswith('search: iter 40/40, eta 00:00, top: ')
    top_name = hub.get_info('ddas_top1').rsplit('=', 1)[0]
    assert f'top: {top_name}=' in lines[-1]


def test_multi_epoch_search_plots_its_snapshots(tmp_path, monkeypatch):
    monkeypatch.setattr('det_autoaug.search.hook.print_log', lambda msg, **kw: None)
    hook = PolicySearchHook(space='det_default')
    hub = _hub('test_user_view_two_epochs', max_iters=10, max_epochs=2)
    _run_log(hook, hub, 10)
    hook.searcher.snapshot(1)
    hook.searcher.snapshot(2)
    fig = hook.plot(None)
    assert all(len(line.get_xdata()) == 2 for line in _entry_lines(fig))
    assert fig.axes[0].get_xlabel() == 'epoch'


@pytest.mark.parametrize('name', sorted(SEARCHERS))
def test_every_searcher_logs_its_top_entries_by_name(name):
    searcher = build_searcher(name, get_space('det_default'), {})
    scalars, infos = searcher.log_items(3)
    tops = {k: v for k, v in infos.items() if re.search(r'_top\d+$', k)}
    assert len(tops) == 3 and f'train/{name}_top1_prob' in scalars
    op_names = [spec.name for spec in OPS]
    for value in tops.values():
        assert any(op in value for op in op_names), f'{name} logs {value!r} without an op name'
    assert all(re.search(r'=\d\.\d{3}$', entry) for entry in top_entries(infos))


def test_progress_eta_and_helpers():
    clock = iter([0.0, 10.0, 20.0]).__next__
    progress = SearchProgress(3, every=1, clock=clock)
    assert progress.update(1, {}) == 'search: iter 1/3, eta --:--'
    assert progress.update(2, {'x_top2': 'B=0.1', 'x_top1': 'A@3=0.21449'}) == \
        'search: iter 2/3, eta 00:10, top: A@3=0.214, B=0.100'
    assert format_seconds(3725) == '1:02:05' and format_seconds(59.6) == '01:00'


# ----------------------------------------------------------------------------- naming what ran

def test_traced_chain_equals_run_chain_np_and_names_the_steps_that_ran():
    image = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    boxes = np.array([[2, 2, 20, 20], [30, 5, 49, 39]], np.float32)
    chain = [ChainStep('Invert', 1.0, 0.5), ChainStep('Rotate', 20.0, 0.5), ChainStep('Equalize', 1.0, 0.0)]
    seen = set()
    for seed in range(12):
        expected = run_chain_np(image, boxes, chain, torch.Generator().manual_seed(seed))
        *got, applied = run_chain_traced(image, boxes, chain, torch.Generator().manual_seed(seed))
        for a, b in zip(expected, got):
            np.testing.assert_array_equal(a, b)
        invert_ran = ChainStep('Invert', 1.0, 0.5) in applied
        alone = run_chain_np(image, None, chain[:1], torch.Generator().manual_seed(seed))[0]
        assert invert_ran == (not np.array_equal(alone, image))
        assert ChainStep('Equalize', 1.0, 0.0) not in applied
        seen.add(describe_steps(applied))
    assert 'no op applied' in seen and 'Invert + Rotate(±20)' in seen
    # a bbox-only step is named when it selected a box: then, and only then, the pixels change
    flip = [ChainStep('Flip_Only_BBoxes', 1.0, 0.6)]
    named = set()
    for seed in range(12):
        out, _, _, _, applied = run_chain_traced(image, boxes, flip, torch.Generator().manual_seed(seed))
        assert bool(applied) == (not np.array_equal(out, image))
        named.add(bool(applied))
    assert named == {True, False}


def test_describe_steps():
    assert describe_steps([]) == 'no op applied'
    assert describe_steps([ChainStep('Rotate', 12.0, 1.0), ChainStep('Color', 0.4, 1.0)]) == 'Rotate(±12) + Color(0.4)'
    assert describe_steps([ChainStep('Equalize', 1.0, 0.3)]) == 'Equalize'


def _browse_module():
    spec = importlib.util.spec_from_file_location('browse_policy', ROOT / 'tools' / 'browse_policy.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_browse_policy_refuses_a_config_whose_data_is_missing(tmp_path):
    browse = _browse_module()
    config = ROOT / 'configs' / 'coco' / 'retinanet_r50_fpn_1x_coco_autoaug_v0.py'
    with pytest.raises(SystemExit, match=r'training data is missing: the annotation file \S*nowhere'
                                         r'/annotations/instances_train2017\.json does not exist'):
        browse.main([str(config), '--out', str(tmp_path / 'x.png'), '--data', str(tmp_path / 'nowhere')])
    with pytest.raises(SystemExit, match='instances_train2017.json does not exist'):
        browse.main([str(config), '--out', str(tmp_path / 'x.png')])


@pytest.fixture(scope='module')
def digits(tmp_path_factory) -> Path:
    return make_digits(tmp_path_factory.mktemp('digits') / 'd', train=6, val=1, test=1)


def _panel_titles(browse, monkeypatch, argv):
    titles = []
    draw = browse._draw
    monkeypatch.setattr(browse, '_draw', lambda ax, *a: (titles.append(a[-1]), draw(ax, *a)))
    browse.main(argv)
    return titles[1::2]


def test_browse_policy_names_the_ops_of_each_panel(digits, tmp_path, monkeypatch):
    torch.set_num_threads(1)
    browse = _browse_module()
    titles = _panel_titles(browse, monkeypatch, ['--op', 'Rotate', '--level', '10', '--data', str(digits),
                                                 '--n', '3', '--out', str(tmp_path / 'rotate.png')])
    assert len(titles) == 3 and all(t.startswith('Rotate(±') for t in titles), titles
    assert (tmp_path / 'rotate.png').stat().st_size > 1000
    entries = get_space('det_default')
    never = save_policy_file(tmp_path / 'never.json', searcher='ddas', space='det_default', entries=entries,
                             probs=[1.0 / len(entries)] * len(entries), apply_prob=0.0)
    titles = _panel_titles(browse, monkeypatch, [never.path, '--data', str(digits), '--n', '3',
                                                 '--out', str(tmp_path / 'never.png')])
    assert len(titles) == 3 and all(t.startswith('no op applied') for t in titles), titles
    assert not any('augmented' in t for t in titles)


# ----------------------------------------------------------------------------- DetPolicy

class FixedChain(Policy):
    """Always the same chain (a big translation: boxes leave the image)."""

    name = 'fixed'

    def __init__(self, chain):
        self.chain = list(chain)

    def sample_chain(self, generator, epoch=None, train_epochs=None):
        return list(self.chain)


def _scene(seed: int = 0):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    boxes = np.array([[1, 1, 20, 20], [30, 10, 50, 40], [60, 35, 79, 59]], np.float32)
    return image, boxes, np.array([3, 5, 7])


def test_det_policy_is_apply_chain_np_and_labels_follow_the_kept_boxes():
    image, boxes, labels = _scene()
    policy = FixedChain([ChainStep('TranslateX', 0.3, 1.0)])
    dropped = False
    for seed in range(4):
        snapshot = image.copy(), boxes.copy(), labels.copy()
        out, out_boxes, out_labels = DetPolicy(policy, seed=seed)(image, boxes, labels)
        generator = torch.Generator().manual_seed(seed)
        chain = policy.sample_chain(generator)
        ref, ref_boxes, keep = apply_chain_np(image, boxes, chain, generator)
        np.testing.assert_array_equal(out, ref)
        np.testing.assert_array_equal(out_boxes, ref_boxes)
        np.testing.assert_array_equal(out_labels, labels[keep])
        dropped |= not keep.all()
        for before, after in zip(snapshot, (image, boxes, labels)):
            np.testing.assert_array_equal(before, after)  # inputs untouched
    assert dropped, 'the test needs a draw that drops a box'


def test_det_policy_keeps_the_kind_of_each_input():
    image, boxes, labels = _scene()
    aug = DetPolicy(FixedChain([ChainStep('Rotate', 15.0, 1.0)]), seed=0)
    out = aug(image, boxes.tolist(), labels.tolist())
    assert isinstance(out[0], np.ndarray) and isinstance(out[1], np.ndarray) and isinstance(out[2], list)
    chw = torch.from_numpy(image).permute(2, 0, 1)
    out_img, out_boxes, out_labels = aug(chw, torch.from_numpy(boxes).double(), torch.from_numpy(labels))
    assert out_img.shape == chw.shape and out_img.dtype == torch.uint8
    assert out_boxes.dtype == torch.float64 and isinstance(out_labels, torch.Tensor)
    assert len(out_labels) == len(out_boxes)
    out_img, out_boxes, out_labels = aug(chw.float(), boxes, None)
    assert out_img.dtype == torch.float32 and isinstance(out_boxes, np.ndarray) and out_labels is None
    batch = torch.stack([chw, chw.flip(-1)])
    out_img, out_boxes, out_labels = aug(batch, [boxes, torch.from_numpy(boxes)], [labels, torch.from_numpy(labels)])
    assert out_img.shape == batch.shape
    assert isinstance(out_boxes[0], np.ndarray) and isinstance(out_boxes[1], torch.Tensor)
    assert [len(b) for b in out_boxes] == [len(lab) for lab in out_labels]
    assert aug(image)[1:] == (None, None)


def test_det_policy_is_reproducible_and_builds_every_kind_of_policy(tmp_path):
    image, boxes, labels = _scene()
    runs = [[DetPolicy('trivialaugment', seed=3)(image, boxes, labels)[0] for _ in range(1)] for _ in range(2)]
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    entries = get_space('det_default')
    path = tmp_path / 'policy.json'
    save_policy_file(path, searcher='ddas', space='det_default', entries=entries,
                     probs=[1.0 / len(entries)] * len(entries), apply_prob=1.0)
    for spec in ('autoaug_det_v1', str(path), dict(name='trivialaugment', space='ddas_cifar'),
                 build_policy('autoaug_det_v2')):
        out = DetPolicy(spec, seed=0)(image, boxes, labels)
        assert out[0].shape == image.shape and len(out[1]) == len(out[2])


@pytest.mark.parametrize('call, match', [
    (lambda aug, im, b, l: aug([[0]], b, l), 'image must be an'),
    (lambda aug, im, b, l: aug(im.astype(np.float32), b, l), 'image: a numpy image must have dtype uint8'),
    (lambda aug, im, b, l: aug(im[..., :2], b, l), r'image: a numpy image must be \(H, W, 3\)'),
    (lambda aug, im, b, l: aug(torch.zeros(1, 1, 3, 8, 8), b, l), 'image must be an'),
    (lambda aug, im, b, l: aug(torch.zeros(5, 8, 8), b, l), 'C 1 or 3'),
    (lambda aug, im, b, l: aug(torch.full((3, 8, 8), float('nan')), b, l), 'NaN'),
    (lambda aug, im, b, l: aug(im, b[:, :3], l), r'boxes must have shape \(N, 4\)'),
    (lambda aug, im, b, l: aug(im, b[:, [2, 1, 0, 3]], l), 'boxes holds invalid boxes'),
    (lambda aug, im, b, l: aug(im, 'boxes', l), 'boxes must be'),
    (lambda aug, im, b, l: aug(im, b, l[:2]), 'labels has 2 entries for 3 boxes'),
    (lambda aug, im, b, l: aug(im, b, l[:, None]), 'labels must be a 1-d sequence'),
    (lambda aug, im, b, l: aug(im, None, l), 'labels were given without boxes'),
    (lambda aug, im, b, l: aug(torch.zeros(2, 3, 8, 8), b, None), r'boxes: a \(2, C, H, W\) batch needs a list of 2'),
])
def test_det_policy_names_the_bad_input(call, match):
    image, boxes, labels = _scene()
    with pytest.raises(ValueError, match=match):
        call(DetPolicy('autoaug_det_v0', seed=0), image, boxes, labels)


def test_det_policy_refuses_bad_arguments():
    with pytest.raises(ValueError, match='seed'):
        DetPolicy('autoaug_det_v0', seed=1.5)
    with pytest.raises(ValueError, match='neither a published policy'):
        DetPolicy('autoaug_det_v9')


def _readme_snippet() -> str:
    text = (ROOT / 'README.md').read_text(encoding='utf-8')
    start = text.index(README_MARKER)
    block = re.search(r'```python\n(.*?)```', text[start:], re.S)
    assert block is not None, 'no python block after the README marker'
    return block.group(1)


def test_readme_snippet_runs_verbatim():
    image, boxes, labels = _scene()
    images = torch.from_numpy(np.stack([image, image[::-1].copy()])).permute(0, 3, 1, 2)
    namespace = dict(image=image, boxes=boxes, labels=labels, images=images,
                     boxes_list=[torch.from_numpy(boxes)] * 2, labels_list=[torch.from_numpy(labels)] * 2)
    exec(compile(_readme_snippet(), 'README.md', 'exec'), namespace)
    assert isinstance(namespace['image'], np.ndarray) and namespace['image'].shape == image.shape
    assert len(namespace['boxes']) == len(namespace['labels'])
    assert namespace['images'].shape == images.shape
    assert all(len(b) == len(lab) for b, lab in zip(namespace['boxes_list'], namespace['labels_list']))


def test_det_policy_imports_and_runs_without_openmmlab():
    script = ("import sys\n"
              "for name in ('mmdet', 'mmengine', 'mmcv', 'pycocotools'):\n"
              "    sys.modules[name] = None\n"
              "import numpy as np\n"
              "from det_autoaug.policy import DetPolicy\n"
              "out = DetPolicy('autoaug_det_v0', seed=0)(np.zeros((32, 32, 3), np.uint8), [[2, 2, 20, 20]], [1])\n"
              "leaked = [m for m in sys.modules if m.split('.')[0] in ('mmdet', 'mmengine', 'mmcv') "
              "and sys.modules[m] is not None]\n"
              "assert not leaked, leaked\n"
              "print('ok', len(out[1]))\n")
    proc = subprocess.run([sys.executable, '-c', script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.startswith('ok'), proc.stderr[-3000:]
