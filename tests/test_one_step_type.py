"""One step type (``ChainStep``) and one torch chain applier (``apply_chains_torch``) for every caller:
the policies, the search's batch copies (hard and differentiable, with DADA's gates) and the
classification comparison."""
from __future__ import annotations

import pytest
import torch

from det_autoaug.ops.spaces import SpaceEntry, get_space
from det_autoaug.policy import ChainStep, SubPolicyOp, apply_chains_torch
from det_autoaug.policy.step import as_step
from det_autoaug.search.batch_augment import augment_batch

pytestmark = pytest.mark.usefixtures('one_thread')  # small tensors (conftest.py)


def _images(n: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, 12, 16), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def test_every_import_path_names_the_one_step_class():
    from det_autoaug.policy import policy, sampling, step
    assert ChainStep is step.ChainStep is sampling.ChainStep is policy.ChainStep


def test_entries_and_sub_policy_ops_convert_to_steps():
    entry = get_space('det_default')[10]
    assert entry.step() == ChainStep(entry.op, entry.magnitude, 1.0)
    assert SpaceEntry('Rotate', 9.0, 3.0).step(0.4) == ChainStep('Rotate', 9.0, 0.4)
    assert SubPolicyOp('Color', 0.4, 0.6).step() == ChainStep('Color', 0.4, 0.6)
    assert as_step(('Rotate', 9.0)) == ChainStep('Rotate', 9.0, 1.0)
    with pytest.raises(ValueError, match='ChainStep'):
        as_step(['Rotate', 9.0])


def test_the_search_copies_take_steps_and_the_former_tuples_alike():
    batch = dict(inputs=_images(4))
    chain = [('Rotate', 15.0), ('Cutout', 0.3), ('Color', 0.5)]
    for backend in ('auto', 'torch'):  # on the CPU 'auto' is the cv2 route (tests/test_copies_cv2.py)
        a = augment_batch(batch, chain, torch.Generator().manual_seed(1), bgr=False, backend=backend)['inputs']
        b = augment_batch(batch, [ChainStep(op, m) for op, m in chain], torch.Generator().manual_seed(1),
                          bgr=False, backend=backend)['inputs']
        assert torch.equal(a, b) and not torch.equal(a, batch['inputs'])
    # the torch route: the same draws as the one applier with one batch draw per op and no run draws
    direct, _, _ = apply_chains_torch(batch['inputs'], None, [[ChainStep(op, m) for op, m in chain]] * 4,
                                      torch.Generator().manual_seed(1), draws='per_op', draw_runs=False)
    assert torch.equal(a, direct)


def test_gates_mix_images_move_boxes_only_where_open_and_carry_gradients():
    images = _images(2).float()
    boxes = [torch.tensor([[2.0, 2.0, 8.0, 8.0]]), torch.tensor([[4.0, 3.0, 10.0, 9.0]])]
    magnitude = torch.tensor(0.25, requires_grad=True)
    gate = torch.tensor([1.0, 0.0], requires_grad=True)
    chains = [[ChainStep('TranslateX', magnitude, 1.0, gate)]] * 2
    out, out_boxes, keeps = apply_chains_torch(images, boxes, chains, torch.Generator().manual_seed(0),
                                               draws='per_op', draw_runs=False)
    plain, plain_boxes, _ = apply_chains_torch(images, boxes, [[ChainStep('TranslateX', 0.25)]] * 2,
                                               torch.Generator().manual_seed(0), draws='per_op', draw_runs=False)
    torch.testing.assert_close(out[0], plain[0])  # x + 1 * (op(x) - x): op(x) up to float rounding
    assert torch.equal(out[1], images[1])
    assert torch.equal(out_boxes[0], plain_boxes[0]) and torch.equal(out_boxes[1], boxes[1])
    assert keeps[1].all()
    grad_m, grad_g = torch.autograd.grad(out.sum(), [magnitude, gate])
    assert grad_m != 0 and grad_g[1] != 0  # a closed gate still gets the gradient op(x) - x


def test_per_image_draws_take_gates_too():
    images = _images(3).float()
    gate = torch.tensor(0.0, requires_grad=True)
    out, _, _ = apply_chains_torch(images, None, [[ChainStep('Invert', 1.0, 1.0, gate)]] * 3,
                                   torch.Generator().manual_seed(0))
    assert torch.equal(out, images)
    grad, = torch.autograd.grad(out.sum(), [gate])
    assert torch.isclose(grad, (255.0 - 2 * images).sum())


def test_classification_comparison_is_the_one_applier():
    from det_autoaug.evaluation.compare_cls import apply_chains_batched
    images = _images(4).float()
    chains = [[ChainStep('Rotate', 10.0, 0.5), ChainStep('Color', 0.3)], [ChainStep('Color', 0.6)], [],
              [ChainStep('Rotate', 20.0, 0.9)]]
    expected, _, _ = apply_chains_torch(images, None, chains, torch.Generator().manual_seed(3), draws='per_op')
    assert torch.equal(apply_chains_batched(images, chains, torch.Generator().manual_seed(3)), expected)


def test_bad_draws_generators_and_gates_are_named():
    images = _images(2)
    chains = [[ChainStep('Invert', 1.0)]] * 2
    with pytest.raises(ValueError, match="draws='sometimes'"):
        apply_chains_torch(images, None, chains, torch.Generator(), draws='sometimes')
    with pytest.raises(ValueError, match='one torch.Generator'):
        apply_chains_torch(images, None, chains, [torch.Generator()] * 2, draws='per_op')
    gated = [[ChainStep('Invert', 1.0, 1.0, torch.tensor(1.0))], [ChainStep('Invert', 1.0, 1.0, torch.tensor(1.0))]]
    with pytest.raises(ValueError, match='different gates'):
        apply_chains_torch(images.float(), None, gated, torch.Generator(), draws='per_op')
    with pytest.raises(ValueError, match='gate has 3 values'):
        apply_chains_torch(images.float(), None, [[ChainStep('Invert', 1.0, 1.0, torch.ones(3))]] * 2,
                           torch.Generator(), draws='per_op')
