"""The published AutoAugment-for-detection policies (Zoph et al. 2019, arXiv 1906.11172), as data.

Transcribed from the TensorFlow reference implementation (tensorflow/tpu,
``models/official/detection/utils/autoaugment_utils.py``: ``policy_v0`` .. ``policy_v3``). Each
policy is a tuple of sub-policies; a sub-policy is a tuple of ``(tf_op_name, prob, level)``
steps applied in order, each with its probability. Per image, one sub-policy is drawn
uniformly.

Op names are the TensorFlow names; they resolve through :func:`det_autoaug.ops.table.get_op`
(``'Rotate_BBox'`` -> ``Rotate``). Levels are on the 0..10 scale and map to magnitudes with the
detection convention, ``get_op(name).magnitude_at(level, 'det')``. For bbox-only ops the
probability is the TF one: the op is always called and each box is selected with probability
``prob / 3``.
"""
from __future__ import annotations

from typing import Dict, Tuple

Step = Tuple[str, float, int]
SubPolicy = Tuple[Step, ...]

#: The policy of the paper (5 sub-policies).
AUTOAUG_DET_V0: Tuple[SubPolicy, ...] = (
    (('TranslateX_BBox', 0.6, 4), ('Equalize', 0.8, 10)),
    (('TranslateY_Only_BBoxes', 0.2, 2), ('Cutout', 0.8, 8)),
    (('Sharpness', 0.0, 8), ('ShearX_BBox', 0.4, 0)),
    (('ShearY_BBox', 1.0, 2), ('TranslateY_Only_BBoxes', 0.6, 6)),
    (('Rotate_BBox', 0.6, 10), ('Color', 1.0, 6)),
)

#: v0 plus 15 sub-policies (20 in all).
AUTOAUG_DET_V1: Tuple[SubPolicy, ...] = AUTOAUG_DET_V0 + (
    (('Color', 0.0, 0), ('ShearX_Only_BBoxes', 0.8, 4)),
    (('ShearY_Only_BBoxes', 0.8, 2), ('Flip_Only_BBoxes', 0.0, 10)),
    (('Equalize', 0.6, 10), ('TranslateX_BBox', 0.2, 2)),
    (('Color', 1.0, 10), ('TranslateY_Only_BBoxes', 0.4, 6)),
    (('Rotate_BBox', 0.8, 10), ('Contrast', 0.0, 10)),
    (('Cutout', 0.2, 2), ('Brightness', 0.8, 10)),
    (('Color', 1.0, 6), ('Equalize', 1.0, 2)),
    (('Cutout_Only_BBoxes', 0.4, 6), ('TranslateY_Only_BBoxes', 0.8, 2)),
    (('Color', 0.2, 8), ('Rotate_BBox', 0.8, 10)),
    (('Sharpness', 0.4, 4), ('TranslateY_Only_BBoxes', 0.0, 4)),
    (('Sharpness', 1.0, 4), ('SolarizeAdd', 0.4, 4)),
    (('Rotate_BBox', 1.0, 8), ('Sharpness', 0.2, 8)),
    (('ShearY_BBox', 0.6, 10), ('Equalize_Only_BBoxes', 0.6, 8)),
    (('ShearX_BBox', 0.2, 6), ('TranslateY_Only_BBoxes', 0.2, 10)),
    (('SolarizeAdd', 0.6, 8), ('Brightness', 0.8, 10)),
)

#: 15 sub-policies of 3 steps.
AUTOAUG_DET_V2: Tuple[SubPolicy, ...] = (
    (('Color', 0.0, 6), ('Cutout', 0.6, 8), ('Sharpness', 0.4, 8)),
    (('Rotate_BBox', 0.4, 8), ('Sharpness', 0.4, 2), ('Rotate_BBox', 0.8, 10)),
    (('TranslateY_BBox', 1.0, 8), ('AutoContrast', 0.8, 2)),
    (('AutoContrast', 0.4, 6), ('ShearX_BBox', 0.8, 8), ('Brightness', 0.0, 10)),
    (('SolarizeAdd', 0.2, 6), ('Contrast', 0.0, 10), ('AutoContrast', 0.6, 0)),
    (('Cutout', 0.2, 0), ('Solarize', 0.8, 8), ('Color', 1.0, 4)),
    (('TranslateY_BBox', 0.0, 4), ('Equalize', 0.6, 8), ('Solarize', 0.0, 10)),
    (('TranslateY_BBox', 0.2, 2), ('ShearY_BBox', 0.8, 8), ('Rotate_BBox', 0.8, 8)),
    (('Cutout', 0.8, 8), ('Brightness', 0.8, 8), ('Cutout', 0.2, 2)),
    (('Color', 0.8, 4), ('TranslateY_BBox', 1.0, 6), ('Rotate_BBox', 0.6, 6)),
    (('Rotate_BBox', 0.6, 10), ('BBox_Cutout', 1.0, 4), ('Cutout', 0.2, 8)),
    (('Rotate_BBox', 0.0, 0), ('Equalize', 0.6, 6), ('ShearY_BBox', 0.6, 8)),
    (('Brightness', 0.8, 8), ('AutoContrast', 0.4, 2), ('Brightness', 0.2, 2)),
    (('TranslateY_BBox', 0.4, 8), ('Solarize', 0.4, 6), ('SolarizeAdd', 0.2, 10)),
    (('Contrast', 1.0, 10), ('SolarizeAdd', 0.2, 8), ('Equalize', 0.2, 4)),
)

#: 15 sub-policies of 2 steps.
AUTOAUG_DET_V3: Tuple[SubPolicy, ...] = (
    (('Posterize', 0.8, 2), ('TranslateX_BBox', 1.0, 8)),
    (('BBox_Cutout', 0.2, 10), ('Sharpness', 1.0, 8)),
    (('Rotate_BBox', 0.6, 8), ('Rotate_BBox', 0.8, 10)),
    (('Equalize', 0.8, 10), ('AutoContrast', 0.2, 10)),
    (('SolarizeAdd', 0.2, 2), ('TranslateY_BBox', 0.2, 8)),
    (('Sharpness', 0.0, 2), ('Color', 0.4, 8)),
    (('Equalize', 1.0, 8), ('TranslateY_BBox', 1.0, 8)),
    (('Posterize', 0.6, 2), ('Rotate_BBox', 0.0, 10)),
    (('AutoContrast', 0.6, 0), ('Rotate_BBox', 1.0, 6)),
    (('Equalize', 0.0, 4), ('Cutout', 0.8, 10)),
    (('Brightness', 1.0, 2), ('TranslateY_BBox', 1.0, 6)),
    (('Contrast', 0.0, 2), ('ShearY_BBox', 0.8, 0)),
    (('AutoContrast', 0.8, 10), ('Contrast', 0.2, 10)),
    (('Rotate_BBox', 1.0, 10), ('Cutout', 1.0, 10)),
    (('SolarizeAdd', 0.8, 6), ('Equalize', 0.8, 8)),
)

#: Every published policy by the name ``build_policy`` accepts.
PUBLISHED_POLICIES: Dict[str, Tuple[SubPolicy, ...]] = {
    'autoaug_det_v0': AUTOAUG_DET_V0,
    'autoaug_det_v1': AUTOAUG_DET_V1,
    'autoaug_det_v2': AUTOAUG_DET_V2,
    'autoaug_det_v3': AUTOAUG_DET_V3,
}


def get_published(name: str) -> Tuple[SubPolicy, ...]:
    """A published policy by name.

    Raises:
        KeyError: unknown name; the message lists the known ones.
    """
    if name not in PUBLISHED_POLICIES:
        raise KeyError(f'unknown published policy {name!r}; expected one of {sorted(PUBLISHED_POLICIES)}')
    return PUBLISHED_POLICIES[name]
