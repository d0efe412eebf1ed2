"""A policy file as the search tools print it at the end of a search (``tools/search_det.py``,
``tools/search_cls.py``)."""
from __future__ import annotations

import json
from pathlib import Path


def print_policy(path: Path, top: int = 15) -> None:
    """Print the searched policy of the file ``path`` as a table, most probable entries first.

    A policy with sub-policies (DADA) prints its ``top`` most probable sub-policies; one with entry
    probabilities prints its ``top`` most probable entries, then its 3 least probable ones.
    """
    policy = json.loads(path.read_text())
    if policy.get('subpolicies'):
        print(f"\n{policy['searcher'].upper()} policy ({policy['space']}): top sub-policies")
        for rank, sp in enumerate(policy['subpolicies'][:top], 1):
            ops = ', '.join(f"{o['op']}(m={o['magnitude']:.3g}, p={o['prob']:.2f})" for o in sp['ops'])
            print(f"{rank:>4}  {sp['prob']:.4f}  {ops}")
        return
    entries, probs = policy['entries'], policy['probs']
    uniform = 1.0 / len(probs)
    print(f"\n{policy['searcher'].upper()} policy ({policy['space']}, {len(probs)} entries): an image is augmented "
          f"with probability s = {policy['apply_prob']:.3f} by {policy['ops_per_policy']} entries drawn from p")
    print(f"{'rank':>4}  {'entry':<28} {'magnitude':>9}  {'p':>7}  {'p / uniform':>11}")
    order = sorted(range(len(probs)), key=lambda i: -probs[i])
    for rank, i in enumerate(order[:top], 1):
        e = entries[i]
        label = e['op'] if e.get('level') is None else f"{e['op']}@{e['level']:g}"
        print(f'{rank:>4}  {label:<28} {e["magnitude"]:>9.3f}  {probs[i]:>7.4f}  {probs[i] / uniform:>11.2f}')
    print('  ...')
    for i in order[-3:]:
        e = entries[i]
        label = e['op'] if e.get('level') is None else f"{e['op']}@{e['level']:g}"
        print(f"{'':>4}  {label:<28} {e['magnitude']:>9.3f}  {probs[i]:>7.4f}  {probs[i] / uniform:>11.2f}")
    meta = policy.get('meta', {})
    if meta:
        print(f"search: {meta.get('iterations')} steps in {meta.get('search_seconds')} s")
