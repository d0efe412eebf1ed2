"""The per-image cv2 kernels agree with the batched torch kernels, op by op.

Tolerances (uint8 images, both paths replaying the same ``OpParams``):

- warps (Rotate, ShearX/Y, TranslateX/Y and the geometric bbox-only ops): cv2 interpolates
  bilinearly in fixed point (1/32 px coordinates), kornia in float, so the mean absolute
  difference must be <= 1 grey level and 99% of the values within 4 (measured on these
  images: every value within 1);
- everything else (look-up tables, blends, filters, flips, cutouts): every value within 1 grey
  level (the two paths round at different steps, e.g. cv2 rounds the filtered image);
- boxes within 1e-3 px and the same ``keep`` masks (one shared drop rule).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from det_autoaug.ops.params import sample_params
from det_autoaug.ops.registry import kernels
from det_autoaug.ops.table import OPS, get_op

try:
    from det_autoaug.ops.cv2_ops import apply_op_np
except ImportError as exc:  # a failure with the reason, never a silent skip
    raise ImportError(f'det_autoaug.ops.cv2_ops cannot be imported: {exc}') from exc

H, W = 48, 64
# Ops that interpolate (the smooth whole-image warps and every box warp): looser tolerance.
WARP_OPS = {op.name for op in OPS if op.kind == 'geometric' and op.grad == 'autograd'} | set(kernels('box_matrix'))
BOXES = [np.array([[4.0, 6.0, 30.0, 40.0], [20.5, 10.3, 60.2, 44.7], [40.0, 2.0, 63.0, 20.0],
                   [0.0, 30.0, 10.0, 48.0]], np.float32),
         np.array([[10.2, 5.6, 50.4, 30.1], [2.0, 2.0, 3.5, 47.0], [30.0, 20.0, 64.0, 48.0]], np.float32)]


def _photo() -> np.ndarray:
    """Two real-looking 48x64 RGB images (smooth regions and edges, like detection data)."""
    from skimage.data import astronaut, coffee
    import cv2
    return np.stack([cv2.resize(astronaut(), (W, H), interpolation=cv2.INTER_AREA),
                     cv2.resize(coffee(), (W, H), interpolation=cv2.INTER_AREA)])


IMAGES = _photo()


def _magnitudes(op_name: str):
    lo, hi = get_op(op_name).magnitude_range
    return sorted({lo, 0.0, (lo + hi) / 2.0, hi})


def _torch(op_name, images, boxes, magnitude, params):
    from det_autoaug.ops.torch_ops import apply_op
    x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous() if images.ndim == 4 \
        else torch.from_numpy(images)[:, None]
    out = apply_op(op_name, x, [torch.from_numpy(b) for b in boxes], magnitude, params)
    imgs = out.images.permute(0, 2, 3, 1).numpy() if images.ndim == 4 else out.images[:, 0].numpy()
    return imgs, [b.numpy() for b in out.boxes], [k.numpy() for k in out.keep]


def _check_close(op_name: str, ours: np.ndarray, ref: np.ndarray, where: str) -> None:
    diff = np.abs(ours.astype(np.int32) - ref.astype(np.int32))
    if op_name in WARP_OPS:
        assert diff.mean() <= 1.0, f'{where}: mean abs difference {diff.mean():.3f} > 1'
        assert np.mean(diff <= 4) >= 0.99, f'{where}: only {np.mean(diff <= 4):.4f} of values within 4'
    else:
        assert diff.max() <= 1, f'{where}: max abs difference {diff.max()} > 1 at {np.argwhere(diff > 1)[:3]}'


@pytest.mark.parametrize('op_name', [op.name for op in OPS])
@pytest.mark.parametrize('seed', [0, 1])
def test_cv2_agrees_with_torch(op_name, seed):
    g = torch.Generator().manual_seed(seed)
    params = sample_params(op_name, 2, H, W, [torch.from_numpy(b) for b in BOXES], generator=g,
                           box_prob=0.7)
    for magnitude in _magnitudes(op_name):
        ref_imgs, ref_boxes, ref_keep = _torch(op_name, IMAGES, BOXES, magnitude, params)
        for i in range(2):
            where = f'{op_name} m={magnitude:g} seed={seed} image {i}'
            img, boxes, keep = apply_op_np(op_name, IMAGES[i], BOXES[i], magnitude, params.select(i))
            assert img.shape == IMAGES[i].shape and img.dtype == np.uint8, where
            assert boxes.dtype == np.float32 and keep.dtype == bool, where
            _check_close(op_name, img, ref_imgs[i], where)
            np.testing.assert_array_equal(keep, ref_keep[i], err_msg=where)
            np.testing.assert_allclose(boxes, ref_boxes[i], atol=1e-3, rtol=0, err_msg=where)
            if magnitude == 0:
                np.testing.assert_array_equal(img, IMAGES[i], err_msg=f'{where}: not the identity')


@pytest.mark.parametrize('op_name', [op.name for op in OPS])
def test_grey_images_agree_with_torch(op_name):
    grey = IMAGES[:, :, :, 1].copy()
    g = torch.Generator().manual_seed(3)
    params = sample_params(op_name, 2, H, W, [torch.from_numpy(b) for b in BOXES], generator=g, box_prob=1.0)
    lo, hi = get_op(op_name).magnitude_range
    magnitude = lo + 0.7 * (hi - lo)
    ref_imgs, _, _ = _torch(op_name, grey, BOXES, magnitude, params)
    for i in range(2):
        img, _, _ = apply_op_np(op_name, grey[i], BOXES[i], magnitude, params.select(i))
        assert img.shape == (H, W)
        _check_close(op_name, img, ref_imgs[i], f'{op_name} grey image {i}')


@pytest.mark.parametrize('op_name', [op.name for op in OPS])
def test_inputs_not_modified(op_name):
    image = IMAGES[0].copy()
    boxes = BOXES[0].copy()
    params = sample_params(op_name, 1, H, W, [torch.from_numpy(boxes)], generator=torch.Generator().manual_seed(0),
                           box_prob=1.0)
    lo, hi = get_op(op_name).magnitude_range
    out, out_boxes, _ = apply_op_np(op_name, image, boxes, hi, params.select(0))
    np.testing.assert_array_equal(image, IMAGES[0])
    np.testing.assert_array_equal(boxes, BOXES[0])
    assert not np.shares_memory(out, image) and not np.shares_memory(out_boxes, boxes)


def test_hand_computed_cases():
    img = np.array([[[0, 100, 200], [127, 128, 255]]], np.uint8)   # (1, 2, 3)
    out, _, _ = apply_op_np('SolarizeAdd', img, None, 50.0)
    np.testing.assert_array_equal(out, [[[50, 150, 200], [177, 128, 255]]])
    out, _, _ = apply_op_np('Solarize', img, None, 128.0)            # threshold 128
    np.testing.assert_array_equal(out, [[[0, 100, 55], [127, 127, 0]]])
    out, _, _ = apply_op_np('Posterize', img, None, 4.0)
    np.testing.assert_array_equal(out, [[[0, 96, 192], [112, 128, 240]]])
    out, _, _ = apply_op_np('Invert', img, None, 1.0)
    np.testing.assert_array_equal(out, 255 - img)
    # +40 degrees is counter-clockwise on screen: a blob right of the centre moves up and left.
    blob = np.zeros((41, 41), np.uint8)
    blob[19:22, 34:37] = 255                      # centre (35.5, 20.5), 15 px right of the centre
    params = sample_params('Rotate', 1, 41, 41)
    params.sign[:] = 1.0
    out, boxes, keep = apply_op_np('Rotate', blob, np.array([[34.0, 19.0, 37.0, 22.0]], np.float32), 40.0, params)
    ys, xs = np.nonzero(out > 200)
    expected = (20.5 + 15 * math.cos(math.radians(40)), 20.5 - 15 * math.sin(math.radians(40)))
    assert abs(xs.mean() + 0.5 - expected[0]) < 1.0 and abs(ys.mean() + 0.5 - expected[1]) < 1.0
    np.testing.assert_allclose((boxes[0, :2] + boxes[0, 2:]) / 2, expected, atol=1e-4)
    assert keep.tolist() == [True]


def test_flips_are_exact_and_move_boxes():
    boxes = np.array([[1.0, 2.0, 5.0, 10.0]], np.float32)
    out, b, keep = apply_op_np('FlipLR', IMAGES[0], boxes, 1.0)
    np.testing.assert_array_equal(out, IMAGES[0][:, ::-1])
    np.testing.assert_allclose(b, [[W - 5.0, 2.0, W - 1.0, 10.0]])
    out, b, _ = apply_op_np('FlipUD', IMAGES[0], boxes, 1.0)
    np.testing.assert_array_equal(out, IMAGES[0][::-1])
    np.testing.assert_allclose(b, [[1.0, H - 10.0, 5.0, H - 2.0]])


def test_geometric_ops_drop_boxes_that_leave_the_image():
    boxes = np.array([[0.0, 0.0, 10.0, 10.0], [30.0, 10.0, 50.0, 40.0]], np.float32)
    params = sample_params('TranslateX', 1, H, W, generator=torch.Generator().manual_seed(0))
    params.sign[:] = -1.0
    _, kept, keep = apply_op_np('TranslateX', IMAGES[0], boxes, 0.25, params)   # 16 px to the left
    assert keep.tolist() == [False, True]
    np.testing.assert_allclose(kept, [[14.0, 10.0, 34.0, 40.0]], atol=1e-4)


@pytest.mark.parametrize('bad_image', [np.zeros((H, W, 4), np.uint8), np.zeros((H, W, 3), np.float32),
                                       np.zeros((2, H, W, 3), np.uint8), [[0, 1], [2, 3]]])
def test_bad_image_raises(bad_image):
    with pytest.raises(ValueError, match='image'):
        apply_op_np('Invert', bad_image, None, 1.0)


def test_bad_inputs_raise():
    image = IMAGES[0]
    with pytest.raises(ValueError, match='boxes'):
        apply_op_np('Invert', image, np.zeros((2, 3), np.float32), 1.0)
    with pytest.raises(ValueError, match='invalid boxes'):
        apply_op_np('Invert', image, np.array([[5.0, 0.0, 1.0, 3.0]], np.float32), 1.0)
    with pytest.raises(KeyError, match='NoSuchOp'):
        apply_op_np('NoSuchOp', image, None, 1.0)
    with pytest.raises(ValueError, match='out of range'):
        apply_op_np('Rotate', image, None, 1000.0)
    with pytest.raises(ValueError, match='out of range'):
        apply_op_np('Color', image, None, -1.0)
    with pytest.raises(ValueError, match='real number'):
        apply_op_np('Color', image, None, 'strong')
    with pytest.raises(ValueError, match='params'):
        apply_op_np('Rotate', image, None, 10.0)       # a signed op needs its sign
    with pytest.raises(ValueError, match='batch of 2'):
        apply_op_np('Rotate', image, None, 10.0, sample_params('Rotate', 2, H, W))
    params = sample_params('Rotate_Only_BBoxes', 1, H, W, [torch.from_numpy(BOXES[1])], box_prob=1.0)
    with pytest.raises(ValueError, match='box_mask'):
        apply_op_np('Rotate_Only_BBoxes', image, BOXES[0], 10.0, params)


def test_aliases_and_empty_boxes():
    params = sample_params('Rotate', 1, H, W, generator=torch.Generator().manual_seed(0))
    a = apply_op_np('Rotate_BBox', IMAGES[0], None, 10.0, params)
    b = apply_op_np('Rotate', IMAGES[0], np.zeros((0, 4), np.float32), 10.0, params)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1].shape == (0, 4) and a[2].shape == (0,)


def test_tables_match_mmcv_where_documented_as_equal():
    import mmcv
    image = IMAGES[0]
    for m in (1.0, 3.0, 7.0):
        np.testing.assert_array_equal(apply_op_np('Posterize', image, None, m)[0],
                                      mmcv.posterize(image, 8 - int(m)), err_msg=f'Posterize m={m}')
    for m in (1.0, 100.0, 256.0):
        np.testing.assert_array_equal(apply_op_np('Solarize', image, None, m)[0],
                                      mmcv.solarize(image, 256.0 - m), err_msg=f'Solarize m={m}')
    np.testing.assert_array_equal(apply_op_np('Equalize', image, None, 1.0)[0], mmcv.imequalize(image))
    np.testing.assert_array_equal(apply_op_np('Invert', image, None, 1.0)[0], mmcv.iminvert(image))


@pytest.mark.parametrize('op_name', ['AutoContrast', 'Equalize', 'Color', 'Contrast', 'Brightness', 'Sharpness'])
def test_matches_pil(op_name):
    from PIL import Image, ImageEnhance, ImageOps
    pil = Image.fromarray(IMAGES[1])
    for m in ((1.0,) if op_name in ('AutoContrast', 'Equalize') else (-0.9, 0.3, 1.62)):
        if op_name == 'AutoContrast':
            ref = ImageOps.autocontrast(pil)
        elif op_name == 'Equalize':
            ref = ImageOps.equalize(pil)
        else:
            ref = getattr(ImageEnhance, op_name)(pil).enhance(1.0 + m)
        # PIL rounds its grey image (Color) and mean grey level (Contrast) to integers before
        # blending with factor 1 + m, which moves its result by up to |m| / 2 more.
        tol = 1 + (math.ceil(abs(m) / 2) if op_name in ('Color', 'Contrast') else 0)
        diff = np.abs(apply_op_np(op_name, IMAGES[1], None, m)[0].astype(int) - np.asarray(ref, dtype=int))
        assert diff.max() <= tol, f'{op_name} m={m}: max difference to PIL {diff.max()} > {tol}'


def test_params_of_another_op_raise():
    boxes_t = [torch.from_numpy(BOXES[0])]
    rotate_params = sample_params('Rotate', 1, H, W, boxes_t)
    for op_name in ('Cutout', 'BBox_Cutout', 'Cutout_Only_BBoxes', 'Rotate_Only_BBoxes'):
        with pytest.raises(ValueError, match='params'):
            apply_op_np(op_name, IMAGES[0], BOXES[0], get_op(op_name).magnitude_range[1], rotate_params)
    with pytest.raises(ValueError, match='box_center'):
        apply_op_np('Cutout_Only_BBoxes', IMAGES[0], BOXES[0], 0.1,
                    sample_params('Solarize_Only_BBoxes', 1, H, W, boxes_t, box_prob=1.0))


@pytest.mark.parametrize('op_name', ['Rotate', 'Equalize', 'Sharpness', 'Rotate_Only_BBoxes', 'Cutout'])
def test_strided_views_are_accepted(op_name):
    view = IMAGES[0][:, ::-1]          # negative strides, as np.flip / mmcv.imflip return
    params = sample_params(op_name, 1, H, W, [torch.from_numpy(BOXES[0])], generator=torch.Generator().manual_seed(0),
                           box_prob=1.0)
    m = get_op(op_name).magnitude_range[1]
    got = apply_op_np(op_name, view, BOXES[0], m, params)[0]
    np.testing.assert_array_equal(got, apply_op_np(op_name, view.copy(), BOXES[0], m, params)[0])
