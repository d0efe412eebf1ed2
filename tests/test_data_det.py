"""The embedded detection dataset: determinism, exact boxes, disjoint digit pools, mmdet loading."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from det_autoaug.data import det_digits
from det_autoaug.data.det_digits import (CLASSES, MARKER, build_det_digits, digit_pools, ensure_det_digits,
                                         load_mnist_5k)

ROOT = Path(__file__).resolve().parents[1]
SIZES = {'train': 30, 'val': 10, 'test': 10}


@pytest.fixture(scope='module')
def built(tmp_path_factory):
    """The same small set built twice with seed 0 (once with debug scenes) and once with seed 1."""
    base = tmp_path_factory.mktemp('digits')
    scenes = build_det_digits(base / 'a', seed=0, sizes=SIZES, debug=True)
    build_det_digits(base / 'b', seed=0, sizes=SIZES)
    build_det_digits(base / 'c', seed=1, sizes=SIZES)
    return base, scenes


def _files(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob('*')) if p.is_file()}


def test_same_seed_gives_identical_files(built):
    base, _ = built
    a, b = _files(base / 'a'), _files(base / 'b')
    assert sorted(a) == sorted(b)
    assert len([k for k in a if k.endswith('.png')]) == sum(SIZES.values())
    differing = [k for k in a if a[k] != b[k]]
    assert differing == [], f'files differ between two builds with seed 0: {differing[:5]}'


def test_other_seed_gives_other_data(built):
    base, _ = built
    for split in SIZES:
        assert (base / 'a' / f'{split}.json').read_bytes() != (base / 'c' / f'{split}.json').read_bytes()


def test_coco_json_layout(built):
    base, _ = built
    for split, n in SIZES.items():
        coco = json.loads((base / 'a' / f'{split}.json').read_text())
        assert [c['id'] for c in coco['categories']] == list(range(1, 11))
        assert [c['name'] for c in coco['categories']] == list(CLASSES)
        assert len(coco['images']) == n
        assert len({im['file_name'] for im in coco['images']}) == n
        per_image = {im['id']: 0 for im in coco['images']}
        sizes = {im['id']: (im['width'], im['height']) for im in coco['images']}
        for im in coco['images']:
            with Image.open(base / 'a' / 'images' / im['file_name']) as png:
                assert png.size == (im['width'], im['height'])
                assert png.mode == 'RGB'
            assert 96 <= im['width'] <= 128 and 96 <= im['height'] <= 128
        ids = [a['id'] for a in coco['annotations']]
        assert len(set(ids)) == len(ids)
        _, mnist_labels = load_mnist_5k()
        for ann in coco['annotations']:
            x, y, w, h = ann['bbox']
            width, height = sizes[ann['image_id']]
            assert 0 <= x and 0 <= y and x + w <= width and y + h <= height and w >= 1 and h >= 1
            assert ann['area'] == pytest.approx(w * h)
            assert ann['iscrowd'] == 0
            assert ann['category_id'] - 1 == mnist_labels[ann['source_index']], 'class must be the digit drawn'
            # glyph height is 18..45% of the shorter side (the width may be smaller for a '1')
            assert 0.17 * min(width, height) <= h <= 0.46 * min(width, height)
            per_image[ann['image_id']] += 1
        assert all(1 <= k <= 4 for k in per_image.values()), per_image


def test_boxes_are_the_tight_boxes_of_the_glyph_masks(built):
    base, scenes = built
    for split in SIZES:
        coco = json.loads((base / 'a' / f'{split}.json').read_text())
        anns = {}
        for ann in coco['annotations']:
            anns.setdefault(ann['image_id'], []).append(ann)
        assert len(scenes[split]) == SIZES[split]
        for im, scene in zip(coco['images'], scenes[split]):
            png = np.asarray(Image.open(base / 'a' / 'images' / im['file_name']).convert('RGB'))
            np.testing.assert_array_equal(png, scene.image)
            assert len(scene.masks) == len(anns[im['id']])
            for mask, ann in zip(scene.masks, anns[im['id']]):
                assert mask.shape == png.shape[:2] and mask.any()
                rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
                tight = [float(cols[0]), float(rows[0]), float(cols[-1] + 1 - cols[0]), float(rows[-1] + 1 - rows[0])]
                assert ann['bbox'] == tight
            boxes = scene.boxes
            for i in range(len(boxes)):
                for j in range(i):
                    iou = det_digits._iou(boxes[i], boxes[j:j + 1])[0]
                    assert iou <= det_digits.MAX_IOU + 1e-9


def test_digit_pools_are_disjoint_and_per_class(built):
    base, _ = built
    meta = json.loads((base / 'a' / 'meta.json').read_text())
    pools = {k: set(v) for k, v in meta['digit_pools'].items()}
    assert not pools['train'] & pools['val'] and not pools['train'] & pools['test'] and not pools['val'] & pools['test']
    _, labels = load_mnist_5k()
    for name, expected in (('train', 350), ('val', 75), ('test', 75)):
        counts = np.bincount(labels[sorted(pools[name])], minlength=10)
        assert counts.tolist() == [expected] * 10, (name, counts)
    used = {}
    for split in SIZES:
        coco = json.loads((base / 'a' / f'{split}.json').read_text())
        used[split] = {a['source_index'] for a in coco['annotations']}
        assert used[split] <= pools[split]
    assert not used['train'] & (used['val'] | used['test'])


def test_digit_pools_reject_bad_fractions():
    labels = np.repeat(np.arange(3), 4)
    rng = np.random.Generator(np.random.PCG64(0))
    with pytest.raises(ValueError, match='fractions'):
        digit_pools(labels, rng, {'train': 0.9, 'test': 0.5})


def test_bad_sizes_and_seed_raise(tmp_path):
    with pytest.raises(KeyError, match='unknown split'):
        build_det_digits(tmp_path, sizes={'training': 3})
    with pytest.raises(ValueError, match='size of split'):
        build_det_digits(tmp_path, sizes={'train': -1})
    with pytest.raises(ValueError, match='seed'):
        build_det_digits(tmp_path, seed=-3, sizes={'train': 1})


def test_each_split_loads_in_mmdet_coco_dataset(built):
    from mmdet.datasets import CocoDataset
    from mmdet.utils import register_all_modules

    register_all_modules()
    base, _ = built
    for split, n in SIZES.items():
        coco = json.loads((base / 'a' / f'{split}.json').read_text())
        ds = CocoDataset(data_root=str(base / 'a'), ann_file=f'{split}.json', data_prefix=dict(img='images/'),
                         metainfo=dict(classes=CLASSES), pipeline=[], test_mode=False,
                         filter_cfg=dict(filter_empty_gt=True, min_size=1))
        assert len(ds) == n
        item = ds[0]
        first = [a for a in coco['annotations'] if a['image_id'] == coco['images'][0]['id']]
        assert Path(item['img_path']).is_file()
        assert len(item['instances']) == len(first)
        for inst, ann in zip(item['instances'], first):
            x, y, w, h = ann['bbox']
            assert inst['bbox'] == [x, y, x + w, y + h]
            assert inst['bbox_label'] == ann['category_id'] - 1
            assert inst['ignore_flag'] == 0


def test_ensure_builds_once_and_caches(tmp_path, monkeypatch):
    sizes = {'train': 3, 'val': 2, 'test': 2}
    root = tmp_path / 'cache' / 'digits'
    old_umask = os.umask(0o022)
    try:
        out = ensure_det_digits(root, seed=0, sizes=sizes)
    finally:
        os.umask(old_umask)
    assert out == root and (root / 'train.json').is_file() and (root / MARKER).is_file()
    assert root.stat().st_mode & 0o777 == 0o755, 'the dataset folder keeps mkdtemp\'s 0700'
    stamp = (root / 'train.json').stat().st_mtime_ns
    calls = []
    monkeypatch.setattr(det_digits, 'build_det_digits', lambda *a, **k: calls.append(a))
    assert ensure_det_digits(root, seed=0, sizes=sizes) == root
    assert calls == [] and (root / 'train.json').stat().st_mtime_ns == stamp
    assert not [p for p in root.parent.iterdir() if p.name != 'digits'], 'temporary build folders left behind'


def test_ensure_rebuilds_when_builder_changes(tmp_path):
    sizes = {'train': 2, 'val': 1, 'test': 1}
    root = tmp_path / 'd'
    ensure_det_digits(root, seed=0, sizes=sizes)
    marker = json.loads((root / MARKER).read_text())
    marker['builder_version'] = -1
    (root / MARKER).write_text(json.dumps(marker))
    (root / 'stale.txt').write_text('old build')
    ensure_det_digits(root, seed=0, sizes=sizes)
    assert json.loads((root / MARKER).read_text())['builder_version'] == det_digits.BUILDER_VERSION
    assert not (root / 'stale.txt').exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ['d']


def test_ensure_uses_env_folder_and_protects_foreign_folders(tmp_path, monkeypatch):
    sizes = {'train': 1, 'val': 1, 'test': 1}
    monkeypatch.setenv('DET_AUTOAUG_DATA', str(tmp_path / 'env_data'))
    assert ensure_det_digits(seed=0, sizes=sizes) == tmp_path / 'env_data'
    foreign = tmp_path / 'mine'
    foreign.mkdir()
    (foreign / 'notes.txt').write_text('keep me')
    with pytest.raises(FileExistsError, match='mine'):
        ensure_det_digits(foreign, sizes=sizes)
    assert (foreign / 'notes.txt').read_text() == 'keep me'


def test_make_det_data_cli_and_show_det_data(tmp_path):
    out = tmp_path / 'cli'
    done = subprocess.run([sys.executable, str(ROOT / 'tools' / 'make_det_data.py'), '--out', str(out),
                           '--seed', '3', '--train', '4', '--val', '2', '--test', '2'],
                          capture_output=True, text=True, env={**os.environ, 'PYTHONPATH': str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert len(json.loads((out / 'val.json').read_text())['images']) == 2

    spec = importlib.util.spec_from_file_location('show_det_data', ROOT / 'tools' / 'show_det_data.py')
    show = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(show)
    png = tmp_path / 'grid.png'
    show.main(['--data', str(out), '--split', 'train', '--out', str(png), '--n', '4'])
    assert png.stat().st_size > 1000
    with Image.open(png) as im:
        assert im.size[0] > 100 and im.size[1] > 100
    with pytest.raises(SystemExit, match='nope.json'):
        show.main(['--data', str(out), '--split', 'nope', '--out', str(png)])
