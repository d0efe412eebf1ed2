"""Hand-computed cases of the torch kernels, and PIL's ImageOps / ImageEnhance as references."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

from det_autoaug.ops import OpParams, apply_op, sample_params


def _params(sign=1.0, center=None, box_index=None, box_mask=None, box_center=None, batch=1):
    return OpParams(sign=torch.full((batch,), sign),
                    center=torch.zeros(0, 2) if center is None else torch.tensor(center),
                    box_index=torch.zeros(0, dtype=torch.long) if box_index is None else torch.tensor(box_index),
                    box_mask=box_mask or [], box_center=box_center or [])


def _image(seed=0, h=16, w=20):
    return torch.randint(0, 256, (1, 3, h, w), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def _pil(images):
    return Image.fromarray(images[0].permute(1, 2, 0).numpy())


def _from_pil(image):
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)[None]


def test_invert():
    x = torch.tensor([0, 1, 128, 255], dtype=torch.uint8).view(1, 1, 1, 4)
    assert apply_op('Invert', x, None, 1.0).images.flatten().tolist() == [255, 254, 127, 0]


def test_posterize_keeps_high_bits():
    x = torch.tensor([0, 37, 200, 255], dtype=torch.uint8).view(1, 1, 1, 4)
    # m = 4: keep 4 bits -> value & 0xF0; m = 7: keep 1 bit -> value & 0x80.
    assert apply_op('Posterize', x, None, 4.0).images.flatten().tolist() == [0, 32, 192, 240]
    assert apply_op('Posterize', x, None, 7.0).images.flatten().tolist() == [0, 0, 128, 128]
    assert apply_op('Posterize', x, None, 3.6).images.flatten().tolist() == [0, 32, 192, 240]


def test_solarize_threshold_and_solarize_add():
    x = torch.tensor([10, 127, 128, 200, 250], dtype=torch.uint8).view(1, 1, 1, 5)
    # m = 56: threshold 200; pixels >= 200 are inverted.
    assert apply_op('Solarize', x, None, 56.0).images.flatten().tolist() == [10, 127, 128, 55, 5]
    assert apply_op('SolarizeAdd', x, None, 100.0).images.flatten().tolist() == [110, 227, 128, 200, 250]
    assert apply_op('SolarizeAdd', x, None, 150.0).images.flatten().tolist() == [160, 255, 128, 200, 250]


def test_brightness_and_grey_colour():
    x = torch.tensor([10.0, 100.0, 200.0]).view(1, 1, 1, 3)
    out = apply_op('Brightness', x, None, 0.5).images
    assert out.flatten().tolist() == [15.0, 150.0, 255.0]
    # One channel is grey: Color (a saturation change) leaves it as it is.
    assert torch.equal(apply_op('Color', x, None, 1.0).images, x)


@pytest.mark.parametrize('name, pil_op', [
    ('Equalize', ImageOps.equalize), ('AutoContrast', ImageOps.autocontrast),
    ('Posterize', lambda im: ImageOps.posterize(im, 3)), ('Solarize', lambda im: ImageOps.solarize(im, 156)),
    ('Invert', ImageOps.invert)])
def test_matches_pil_imageops(name, pil_op):
    images = _image()
    # Narrow range so that AutoContrast and Equalize have work to do.
    images = (images.float() * 0.5 + 40).to(torch.uint8)
    magnitude = {'Posterize': 5.0, 'Solarize': 100.0}.get(name, 1.0)
    expected = _from_pil(pil_op(_pil(images)))
    assert not torch.equal(expected, images), f'PIL left the image unchanged: a vacuous {name} case'
    got = apply_op(name, images, None, magnitude).images
    # PIL's AutoContrast truncates where we round.
    assert (got.int() - expected.int()).abs().max() <= (1 if name == 'AutoContrast' else 0)


@pytest.mark.parametrize('name, enhancer', [('Color', ImageEnhance.Color), ('Contrast', ImageEnhance.Contrast),
                                            ('Brightness', ImageEnhance.Brightness),
                                            ('Sharpness', ImageEnhance.Sharpness)])
@pytest.mark.parametrize('magnitude', [-0.7, 0.8])
def test_matches_pil_imageenhance(name, enhancer, magnitude):
    images = _image(1)
    expected = _from_pil(enhancer(_pil(images)).enhance(1.0 + magnitude))
    got = apply_op(name, images, None, magnitude).images
    # PIL works in integers (rounded grey, rounded mean, rounded filter output).
    assert (got.int() - expected.int()).abs().max() <= 2


@pytest.mark.parametrize('name, pil_filter, border', [('Blur', ImageFilter.BLUR, 2), ('Smooth', ImageFilter.SMOOTH, 1)])
def test_blur_smooth_match_pil_inside(name, pil_filter, border):
    images = _image(2)
    expected = _from_pil(_pil(images).filter(pil_filter))
    got = apply_op(name, images, None, 1.0).images
    inner = (slice(None), slice(None), slice(border, -border), slice(border, -border))
    assert (got[inner].int() - expected[inner].int()).abs().max() <= 1
    half = apply_op(name, images.float(), None, 0.5).images
    torch.testing.assert_close(half, (images.float() + apply_op(name, images.float(), None, 1.0).images) / 2)


def test_translate_x_whole_pixels():
    x = torch.zeros(1, 1, 8, 10)
    x[0, 0, 3, 4] = 255.0
    out = apply_op('TranslateX', x, [torch.tensor([[4.0, 3.0, 5.0, 4.0]])], 0.2, _params(1.0))
    expected = torch.zeros(1, 1, 8, 10)
    expected[0, 0, 3, 6] = 255.0
    expected[..., :2] = 128.0  # uncovered columns take the fill value
    torch.testing.assert_close(out.images, expected, atol=1e-3, rtol=0)
    torch.testing.assert_close(out.boxes[0], torch.tensor([[6.0, 3.0, 7.0, 4.0]]))
    up = apply_op('TranslateY', x, None, 0.25, _params(-1.0)).images
    assert up[0, 0, 1, 4] == pytest.approx(255.0, abs=1e-3)


def test_flip_lr_box_and_pixels():
    images = _image(3, 12, 20)
    box = torch.tensor([[2.0, 1.0, 7.0, 9.0]])
    out = apply_op('FlipLR', images, [box], 1.0)
    torch.testing.assert_close(out.boxes[0], torch.tensor([[13.0, 1.0, 18.0, 9.0]]))
    assert torch.equal(out.images, images.flip(-1))
    assert torch.equal(apply_op('FlipUD', images, None, 1.0).images, images.flip(-2))


def test_rotate_moves_a_pixel_counter_clockwise():
    x = torch.zeros(1, 1, 33, 33)
    x[0, 0, 16, 26] = 255.0  # 10 px right of the centre (16.5, 16.5)
    out = apply_op('Rotate', x, None, 30.0, _params(1.0)).images[0, 0]
    # Counter-clockwise by 30 deg: (16.5 + 10 cos 30, 16.5 - 10 sin 30) = (25.16, 11.5).
    row, col = divmod(int(out.argmax()), 33)
    assert (row, col) == (11, 25)


def test_bbox_cutout_inside_the_box():
    x = torch.zeros(1, 1, 20, 20)
    box = torch.tensor([[4.0, 6.0, 12.0, 16.0]])
    params = _params(center=[[0.5, 0.5]], box_index=[0])
    out = apply_op('BBox_Cutout', x, [box], 0.5, params)
    # Centre (8, 11), half sizes 2 and 2.5: pixel centres in [6, 10) x [8.5, 13.5).
    expected = torch.zeros(1, 1, 20, 20)
    expected[..., 8:13, 6:10] = 128.0
    assert torch.equal(out.images, expected)
    assert torch.equal(out.boxes[0], box)


def test_cutout_square():
    x = torch.zeros(1, 1, 20, 20)
    out = apply_op('Cutout', x, None, 0.2, _params(center=[[0.25, 0.5]])).images
    expected = torch.zeros(1, 1, 20, 20)
    expected[..., 8:12, 3:7] = 128.0  # side 4 centred at (5, 10)
    assert torch.equal(out, expected)


@pytest.mark.parametrize('name, magnitude', [('Rotate_Only_BBoxes', 30.0), ('TranslateY_Only_BBoxes', 0.1),
                                             ('Equalize_Only_BBoxes', 1.0), ('Cutout_Only_BBoxes', 0.15),
                                             ('Solarize_Only_BBoxes', 128.0), ('Flip_Only_BBoxes', 1.0)])
def test_bbox_only_ops_change_only_selected_boxes(name, magnitude):
    # The selected box holds more than 255 pixels, so that Equalize has a step (PIL's rule).
    images = _image(4, 40, 40)
    boxes = [torch.tensor([[2.0, 3.0, 22.0, 20.0], [26.0, 26.0, 38.0, 38.0]])]
    params = sample_params(name, 1, 40, 40, boxes, generator=torch.Generator().manual_seed(0))
    params.box_mask = [torch.tensor([True, False])]
    out = apply_op(name, images, boxes, magnitude, params)
    inside = torch.zeros(40, 40, dtype=torch.bool)
    inside[3:20, 2:22] = True
    assert torch.equal(out.images[..., ~inside], images[..., ~inside])
    assert not torch.equal(out.images[..., inside], images[..., inside])
    assert torch.equal(out.boxes[0], boxes[0]) and bool(out.keep[0].all())


def test_flip_only_bboxes_mirrors_the_box_content():
    images = _image(5, 16, 16)
    box = torch.tensor([[3.0, 2.0, 9.0, 7.0]])
    params = sample_params('Flip_Only_BBoxes', 1, 16, 16, [box], box_prob=1.0)
    out = apply_op('Flip_Only_BBoxes', images, [box], 1.0, params).images
    assert torch.equal(out[..., 2:7, 3:9], images[..., 2:7, 3:9].flip(-1))


def test_translate_only_bboxes_fills_from_outside_with_128():
    x = torch.zeros(1, 1, 10, 10)
    box = torch.tensor([[2.0, 2.0, 8.0, 8.0]])
    params = _params(1.0, box_mask=[torch.tensor([True])])
    out = apply_op('TranslateX_Only_BBoxes', x, [box], 0.2, params).images
    expected = torch.zeros(1, 1, 10, 10)
    expected[..., 2:8, 2:4] = 128.0  # shifted 2 px right; the 2 uncovered columns come from outside
    torch.testing.assert_close(out, expected, atol=1e-3, rtol=0)


def test_equalize_only_bboxes_uses_the_box_histogram():
    images = _image(6, 28, 28)
    box = torch.tensor([[4.0, 3.0, 24.0, 25.0]])
    params = sample_params('Equalize_Only_BBoxes', 1, 28, 28, [box], box_prob=1.0)
    out = apply_op('Equalize_Only_BBoxes', images, [box], 1.0, params).images
    crop = images[..., 3:25, 4:24]
    expected = _from_pil(ImageOps.equalize(_pil(crop)))
    assert not torch.equal(expected, crop), 'the crop is too small for PIL to equalise it'
    assert torch.equal(out[..., 3:25, 4:24], expected)
