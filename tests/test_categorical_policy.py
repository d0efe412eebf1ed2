"""The categorical policy DDAS and DAAS share, and how the searchers are composed of it (no
searcher derives from another); the checkpoint keys the searchers wrote before the split."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from det_autoaug.cls.nas import ChoiceBlock
from det_autoaug.ops.spaces import SpaceEntry
from det_autoaug.search.architecture import ChoiceArchitecture
from det_autoaug.search.categorical import CategoricalPolicy, Proposal
from det_autoaug.search.core import DDASPolicy
from det_autoaug.search.searchers import (
    DAASJointSearcher,
    DAASSearcher,
    DDASSearcher,
    Searcher,
    TorchSearchContext,
)

pytestmark = pytest.mark.usefixtures('one_thread')  # tiny tensors (conftest.py)

ENTRIES = (SpaceEntry('Identity', 1.0), SpaceEntry('FlipLR', 1.0), SpaceEntry('Rotate', 10.0),
           SpaceEntry('Rotate', 20.0))
POLICY_KEYS = ['version', 'searcher', 'num_entries', 'ops_per_policy', 'alpha', 'beta', 'opt_alpha', 'opt_beta',
               'trajectory', 'num_updates']


def test_searchers_are_composed_not_derived():
    for cls in (DDASSearcher, DAASSearcher, DAASJointSearcher):
        assert cls.__bases__ == (Searcher,), cls
    ddas, daas, joint = DDASSearcher(ENTRIES), DAASSearcher(ENTRIES), DAASJointSearcher(ENTRIES)
    assert isinstance(ddas.policy, DDASPolicy) and isinstance(ddas.policy, CategoricalPolicy)
    assert type(daas.policy) is CategoricalPolicy and daas.policy.searcher_name == 'daas'
    assert isinstance(joint.daas, DAASSearcher) and isinstance(joint.architecture, ChoiceArchitecture)
    assert joint.policy is joint.daas.policy and joint.trajectory is joint.daas.policy.trajectory


def test_step_is_adam_on_given_gradients_and_none_leaves_alpha_alone():
    policy = CategoricalPolicy(3, init_tp=0.3, lr_alpha=0.1, lr_beta=0.05, searcher_name='test')
    alpha, beta = policy.alpha.detach().clone().requires_grad_(), policy.beta.detach().clone().requires_grad_()
    ref_a, ref_b = torch.optim.Adam([alpha], lr=0.1, betas=(0.5, 0.999)), torch.optim.Adam([beta], lr=0.05,
                                                                                             betas=(0.5, 0.999))
    grad_a, grad_b = torch.tensor([0.3, -1.0, 2.0]), torch.tensor(-0.7)
    policy.step(grad_a, grad_b)
    alpha.grad, beta.grad = grad_a.clone(), grad_b.clone()
    ref_a.step()
    ref_b.step()
    assert torch.equal(policy.alpha.detach(), alpha.detach()) and torch.equal(policy.beta.detach(), beta.detach())
    moments = policy.opt_alpha.state_dict()['state'][0]['exp_avg'].clone()
    before = policy.alpha.detach().clone()
    policy.step(None, grad_b)
    beta.grad = grad_b.clone()
    ref_b.step()
    assert torch.equal(policy.alpha.detach(), before), 'no alpha gradient: no alpha step, momentum kept'
    assert torch.equal(policy.opt_alpha.state_dict()['state'][0]['exp_avg'], moments)
    assert int(policy.opt_alpha.state_dict()['state'][0]['step']) == 1
    assert torch.equal(policy.beta.detach(), beta.detach()) and policy.num_updates == 2


def test_draw_and_log_prob_by_hand():
    policy = CategoricalPolicy(4, ops_per_policy=3)
    with torch.no_grad():
        policy.alpha.copy_(torch.tensor([0.5, -1.0, 2.0, 0.0]))
    drawn = policy.draw(torch.Generator().manual_seed(5))
    expected = torch.multinomial(torch.softmax(policy.alpha.detach(), 0).double(), 3, replacement=True,
                                 generator=torch.Generator().manual_seed(5))
    assert torch.equal(drawn, expected) and drawn.shape == (3,)
    entries = torch.tensor([[0, 2, 2], [3, 1, 0]])
    log_p = torch.log_softmax(policy.alpha.detach(), 0)
    torch.testing.assert_close(policy.log_prob(entries).detach(),
                               torch.stack([log_p[[0, 2, 2]].sum(), log_p[[3, 1, 0]].sum()]))
    proposal = Proposal.from_entries(policy, entries)
    torch.testing.assert_close(proposal.prob, policy.log_prob(entries).detach().exp())
    assert math.isclose(float(proposal.weights.sum()), 1.0, rel_tol=1e-6)


def test_outputs_name_the_searcher_and_the_entries():
    policy = CategoricalPolicy(len(ENTRIES), searcher_name='daas')
    with torch.no_grad():
        policy.alpha.copy_(torch.tensor([0.0, 1.0, 0.5, -0.5]))
    policy.snapshot(0)
    exported = policy.export('daas_joint', ENTRIES)
    assert list(exported) == ['searcher', 'entries', 'probs', 'apply_prob', 'ops_per_policy', 'trajectory']
    assert exported['searcher'] == 'daas_joint' and policy.export()['searcher'] == 'daas'
    assert exported['trajectory'] == policy.trajectory and exported['trajectory'] is not policy.trajectory
    labels = [e.label for e in ENTRIES]
    scalars, infos = policy.log_items('daas', labels, 0.25, top=2)
    assert scalars['train/daas_policy_loss'] == 0.25 and infos['daas_top1'].startswith(f'{labels[1]}=')
    assert set(infos) == {'daas_top1', 'daas_top2'} and 'train/daas_top2_prob' in scalars
    assert policy.plot_series(labels) == ([0], labels, [policy.trajectory[0]['probs']], [pytest.approx(0.35)])
    ops = policy.op_probs([e.op for e in ENTRIES])
    p = policy.probs().detach().tolist()
    assert ops == pytest.approx({'Identity': p[0], 'FlipLR': p[1], 'Rotate': p[2] + p[3]})


def test_state_carries_the_searcher_name_and_the_keys_written_before():
    daas = CategoricalPolicy(4, searcher_name='daas')
    daas.step(torch.ones(4), torch.tensor(1.0))
    state = daas.state_dict()
    assert list(state) == POLICY_KEYS and state['searcher'] == 'daas'
    with pytest.raises(ValueError, match="'searcher' is 'daas', expected 'ddas'"):
        DDASPolicy(4).load_state_dict(state)
    other = CategoricalPolicy(4, searcher_name='daas')
    other.load_state_dict(state)
    assert torch.equal(other.alpha.detach(), daas.alpha.detach()) and other.num_updates == 1
    assert list(DDASSearcher(ENTRIES).state_dict()) == POLICY_KEYS
    former = DDASSearcher(ENTRIES, signal='one_step').state_dict()  # the default until 2026-12-04
    with pytest.raises(ValueError, match="'ops_per_policy' is 2, expected 1.*resume .* with signal='one_step'"):
        DDASSearcher(ENTRIES).load_state_dict(former)
    DDASSearcher(ENTRIES, signal='one_step').load_state_dict(former)
    assert list(DDASSearcher(ENTRIES, signal='one_step', horizon=2).state_dict()) == POLICY_KEYS + ['delayed_credit']
    assert list(DAASSearcher(ENTRIES).state_dict()) == ['daas_version', 'reward', 'policy', 'baseline']
    assert list(DAASSearcher(ENTRIES).state_dict()['policy']) == POLICY_KEYS


class _Supernet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block = ChoiceBlock({'keep': nn.Identity(), 'half': _Half()})
        self.head = nn.Linear(4, 2)

    def choice_blocks(self):
        return [self.block]

    def forward(self, x):
        return self.head(self.block(x.flatten(1) / 255.0))


class _Half(nn.Module):
    def forward(self, x):
        return x * 0.5


def test_joint_state_is_daas_plus_arch_and_reaches_into_its_parts():
    torch.manual_seed(0)
    model = _Supernet()
    joint = DAASJointSearcher(ENTRIES, ops_per_policy=1, lr_arch=0.1)
    gen = torch.Generator().manual_seed(1)

    def batch():
        return dict(inputs=torch.rand(4, 1, 2, 2, generator=gen) * 255,
                    targets=torch.randint(0, 2, (4,), generator=gen))
    ctx = TorchSearchContext(model, nn.functional.cross_entropy, torch.optim.SGD(model.parameters(), lr=0.1), batch,
                             joint.num_grad_slots)
    assert joint.state_dict()['arch'] is None  # before setup: no architecture yet
    for _ in range(3):
        joint.step(ctx, batch())
    joint.snapshot(0)
    state = joint.state_dict()
    assert list(state) == ['daas_version', 'reward', 'policy', 'baseline', 'arch']
    assert list(state['arch']) == ['version', 'candidates', 'logits', 'opt', 'updates', 'trajectory']
    assert joint.arch_updates == joint.architecture.updates == 3 and joint.policy.num_updates == 3
    assert joint.logits is joint.architecture.logits and joint.candidates == (('keep', 'half'),)
    joint.arch_updates = 5
    assert joint.architecture.updates == 5 and joint.tau_now() == joint.architecture.tau_now()
    assert joint.last_stats is joint.daas.last_stats and joint.export()['searcher'] == 'daas_joint'
    assert joint.arch_trajectory is joint.architecture.trajectory and len(joint.arch_trajectory) == 1
