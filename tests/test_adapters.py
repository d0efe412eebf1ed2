"""What the policy adapters share (det_autoaug/policy/adapters.py): the epoch reader, the instances."""
from __future__ import annotations

import pytest
import torch
from mmdet.structures import DetDataSample
from mmdet.structures.bbox import HorizontalBoxes
from mmengine.logging import MessageHub
from mmengine.structures import InstanceData

from det_autoaug.policy.adapters import gather_instance_boxes, runner_epoch, scatter_instance_boxes


@pytest.fixture
def hub(monkeypatch):
    # a private hub: registering one with get_instance would leave it current for later tests
    hub = MessageHub('test_adapters_hub')
    monkeypatch.setattr(MessageHub, 'get_current_instance', classmethod(lambda cls: hub))
    return hub


def test_runner_epoch_outside_a_runner_is_unknown(hub):
    assert runner_epoch() == (None, None)
    assert runner_epoch(train_epochs=6) == (None, 6)


def test_runner_epoch_clamps_past_the_runners_max_epochs_only(hub):
    hub.update_info('max_epochs', 3)
    hub.update_info('epoch', 2)
    assert runner_epoch() == (2, 3)
    hub.update_info('epoch', 5)  # an iteration-based loop past its nominal epochs
    assert runner_epoch() == (2, 3)
    assert runner_epoch(train_epochs=4) == (5, 4)  # an explicit value is checked by schedule_index
    hub.update_info('max_epochs', 0)
    assert runner_epoch() == (5, None)


def _sample(gt_boxes, ignored_boxes=None, box_type=HorizontalBoxes):
    sample = DetDataSample(metainfo=dict(img_shape=(40, 40)))
    n = len(gt_boxes)
    sample.gt_instances = InstanceData(bboxes=box_type(torch.tensor(gt_boxes, dtype=torch.float32).view(-1, 4)),
                                       labels=torch.arange(n))
    if ignored_boxes is not None:
        sample.ignored_instances = InstanceData(
            bboxes=box_type(torch.tensor(ignored_boxes, dtype=torch.float32).view(-1, 4)),
            labels=torch.arange(len(ignored_boxes)) + 10)
    return sample


@pytest.mark.parametrize('box_type', [HorizontalBoxes, torch.as_tensor])
def test_gather_then_scatter_drops_instances_with_their_fields(box_type):
    sample = _sample([[0, 0, 4, 4], [5, 5, 9, 9]], [[1, 1, 3, 3], [2, 2, 6, 6]], box_type)
    boxes, n_gt = gather_instance_boxes(sample, 'cpu')
    assert n_gt == 2 and boxes.shape == (4, 4) and boxes.dtype == torch.float32
    keep = torch.tensor([False, True, True, False])
    scatter_instance_boxes(sample, boxes[keep] + 1, keep, n_gt)
    assert sample.gt_instances.labels.tolist() == [1] and sample.ignored_instances.labels.tolist() == [10]
    assert type(sample.gt_instances.bboxes) is type(box_type(torch.zeros(0, 4)))
    gt = sample.gt_instances.bboxes
    assert (gt.tensor if hasattr(gt, 'tensor') else gt).tolist() == [[6.0, 6.0, 10.0, 10.0]]


def test_gather_without_ignored_instances():
    sample = _sample([[0, 0, 4, 4]])
    boxes, n_gt = gather_instance_boxes(sample, 'cpu')
    assert n_gt == 1 and boxes.shape == (1, 4)
    scatter_instance_boxes(sample, boxes, torch.tensor([True]), n_gt)
    assert 'ignored_instances' not in sample and sample.gt_instances.labels.tolist() == [0]


def test_policy_augment_past_max_epochs_uses_the_last_snapshot(tmp_path, hub):
    import numpy as np
    from mmdet.registry import TRANSFORMS

    import det_autoaug.mmdet_plugins  # noqa: F401  (registers PolicyAugment)
    from det_autoaug.ops.spaces import SpaceEntry
    from det_autoaug.policy import save_policy_file
    entries = (SpaceEntry('Identity', 1.0), SpaceEntry('FlipLR', 1.0))
    trajectory = [{'epoch': 0, 'probs': [1.0, 0.0], 'apply_prob': 0.0},
                  {'epoch': 1, 'probs': [0.0, 1.0], 'apply_prob': 1.0}]
    path = save_policy_file(tmp_path / 'p.json', searcher='ddas', space='test', entries=entries, probs=[0.5, 0.5],
                            apply_prob=0.5, ops_per_policy=1, trajectory=trajectory).path
    image = np.arange(8 * 10 * 3, dtype=np.uint8).reshape(8, 10, 3)
    hub.update_info('max_epochs', 3)
    hub.update_info('epoch', 7)  # as the other adapters: counts as the last epoch, whose snapshot flips
    out = TRANSFORMS.build(dict(type='PolicyAugment', policy=path))(dict(img=image.copy(), img_shape=(8, 10)))
    np.testing.assert_array_equal(out['img'], image[:, ::-1])
    with pytest.raises(ValueError, match='epoch=7'):  # an explicit train_epochs that is too small is an error
        TRANSFORMS.build(dict(type='PolicyAugment', policy=path, train_epochs=4))(dict(img=image.copy(),
                                                                                         img_shape=(8, 10)))
