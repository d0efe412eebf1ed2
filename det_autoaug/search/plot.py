"""What a person looks at during and after a search: the policy plot and the progress line.

:func:`plot_policy` draws a searcher's :meth:`~det_autoaug.search.searchers.base.Searcher.plot_series`
(the probability of every entry, or op, and the apply probability ``s`` over the snapshots);
``PolicySearchHook`` writes it as ``policy_probs.png`` at the end of a search.
:class:`SearchProgress` makes the hook's progress lines (``search: iter 12/120, eta 01:23, top:
Rotate@3=0.214, ...``) and keeps the plot points it records within the epoch of a one-epoch search.

matplotlib is imported by :func:`plot_policy` only, and without pyplot (no global figure state,
no backend switch), so the hook can import this module at every step.
"""
from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Callable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

#: y-axis label of the probability panel per searcher (what its ``plot_series`` probabilities are)
PROB_LABELS = {'dada': 'op share of the applied ops', 'dada_shared': 'op share of the sub-policies'}
DEFAULT_PROB_LABEL = 'p (softmax of alpha)'
#: entries named in the legend: the most probable at the last point (all of them when fewer)
LEGEND_TOP = 12
#: marker shapes cycled over the entries, so that neighbours in the colormap also differ in shape
MARKERS = ('o', 's', '^', 'D', 'v', 'P', 'X')


def entry_colours(n: int) -> np.ndarray:
    """``n`` distinct colours: ``tab10`` / ``tab20`` up to 20 entries, else evenly spaced on ``turbo``.

    Returns:
        ``(n, 4)`` RGBA rows, no two equal.
    """
    from matplotlib import colormaps
    if n <= 10:
        return colormaps['tab10'](np.arange(n))
    if n <= 20:
        return colormaps['tab20'](np.arange(n))
    return colormaps['turbo'](np.linspace(0.0, 1.0, n))


def plot_policy(steps: Sequence[float], labels: Sequence[str], probs: Sequence[Sequence[float]],
                apply_probs: Sequence[float], *, searcher: str = '', num_steps: Optional[int] = None,
                unit: str = 'epoch', prob_label: Optional[str] = None, top_k: int = LEGEND_TOP,
                path: Union[str, Path, None] = None):
    """Draw a policy over a search: every entry's probability and the apply probability ``s``.

    Left panel: one line per entry, with a marker on every point (a search with one snapshot
    still shows its points), in ``len(labels)`` distinct colours, on an axis scaled to the
    spread of the probabilities (small moves away from uniform stay visible); the ``top_k`` most probable
    entries at the last point are drawn thicker and named in the legend with their final
    probability, and a dashed line marks the uniform policy ``1 / len(labels)``. Right panel:
    ``s`` on a fixed ``[0, 1]`` axis. The title names the searcher and the number of steps.

    Args:
        steps: the x value of each snapshot (epochs or iterations, see ``unit``), ``T`` of them.
        labels: the entries' (or ops') names, ``N`` of them.
        probs: ``T`` rows of ``N`` probabilities.
        apply_probs: ``T`` values of ``s``.
        searcher: the searcher's name, for the title and the default ``prob_label``.
        num_steps: search steps of the run, for the title (omitted when ``None``).
        unit: what ``steps`` counts (``'epoch'`` or ``'iteration'``), the x label.
        prob_label: y label of the left panel; default from :data:`PROB_LABELS`.
        top_k: entries named in the legend, >= 1.
        path: where to save the figure (PNG at 100 dpi); ``None``: not saved.

    Returns:
        The ``matplotlib.figure.Figure`` (axes ``[probabilities, s]``).

    Raises:
        ValueError: ``probs`` or ``apply_probs`` does not match ``steps`` and ``labels``, or a bad ``top_k``.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f'top_k={top_k!r} is invalid: expected an int >= 1')
    t, n = len(steps), len(labels)
    table = np.asarray(probs, dtype=np.float64)
    if table.size == 0 and t == 0:
        table = table.reshape(0, n)
    if table.shape != (t, n):
        raise ValueError(f'probs has shape {table.shape}: expected one row of {n} probabilities per step ({t} steps)')
    if len(apply_probs) != t:
        raise ValueError(f'apply_probs has {len(apply_probs)} values: expected one per step ({t} steps)')

    fig = Figure(figsize=(13.5, 5.0), layout='constrained')
    ax_p, ax_s = fig.subplots(1, 2, gridspec_kw=dict(width_ratios=(2.3, 1.0)))
    x = np.asarray(steps, dtype=np.float64)
    final = table[-1] if t else np.zeros(n)
    top = [int(i) for i in np.argsort(-final, kind='stable')[:top_k]] if t else []
    colours = entry_colours(n)
    handles = {}
    for i in range(n):
        rank = top.index(i) if i in top else None
        line, = ax_p.plot(x, table[:, i], color=colours[i], marker=MARKERS[i % len(MARKERS)],
                          markersize=3.0 if rank is None else 4.5, lw=0.7 if rank is None else 1.8,
                          alpha=0.45 if rank is None else 1.0,
                          zorder=2 if rank is None else 4 - rank / n,  # the most probable on top
                          label=None if rank is None else f'{labels[i]} ({final[i]:.4g})')
        if rank is not None:
            handles[rank] = line
    legend = [handles[rank] for rank in sorted(handles)]  # most probable first
    if n:
        legend.append(ax_p.axhline(1.0 / n, color='0.4', ls='--', lw=1.0, zorder=1,
                                   label=f'uniform 1/{n} = {1.0 / n:.4g}'))
    ax_p.set_ylabel(prob_label or PROB_LABELS.get(searcher, DEFAULT_PROB_LABEL))
    ax_s.plot(x, np.asarray(apply_probs, dtype=np.float64), color='k', marker='o', markersize=4.5)
    ax_s.set_ylim(0.0, 1.0)
    ax_s.set_ylabel('s = P(augment)')
    for ax in (ax_p, ax_s):
        ax.set_xlabel(unit)
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if t and np.ptp(x) == 0:  # one x value: a unit either side, not matplotlib's +-5 %
            ax.set_xlim(x[0] - 1.0, x[0] + 1.0)
        if not t:
            ax.text(0.5, 0.5, 'no snapshot', transform=ax.transAxes, ha='center', va='center')
    named = f'top {len(top)} of {n} entries named' if n > len(top) else f'{n} entries'
    ax_p.legend(handles=legend, fontsize=7, loc='upper left', bbox_to_anchor=(1.01, 1.0), title=named, title_fontsize=7)
    steps_text = f'{num_steps} steps, ' if num_steps is not None else ''
    fig.suptitle(f'{searcher or "search"}: {steps_text}{t} snapshot{"s" if t != 1 else ""} (per {unit})')
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig


_TOP_KEY = re.compile(r'_top(\d+)$')


def top_entries(infos: Mapping[str, str], top: int = 3) -> List[str]:
    """The ``top`` best-ranked ``<searcher>_top<r>`` infos of ``log_items``, probabilities to 3 decimals.

    ``{'ddas_top1': 'Rotate@3=0.2140'}`` -> ``['Rotate@3=0.214']``; values without a trailing
    ``=<number>`` are kept as they are.
    """
    ranked = sorted((int(m.group(1)), value) for key, value in infos.items() if (m := _TOP_KEY.search(key)))
    out = []
    for _, value in ranked[:top]:
        name, _, prob = str(value).rpartition('=')
        try:
            out.append(f'{name}={float(prob):.3f}' if name else str(value))
        except ValueError:
            out.append(str(value))
    return out


def format_seconds(seconds: float) -> str:
    """``mm:ss``, or ``h:mm:ss`` from an hour on."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f'{hours}:{minutes:02d}:{secs:02d}' if hours else f'{minutes:02d}:{secs:02d}'


class SearchProgress:
    """Progress lines with an ETA, and plot points recorded between snapshots.

    The ETA is the mean time of the steps seen so far (by this process: a resumed search counts
    from where it resumed) times the steps left.

    Args:
        max_iters: iterations of the whole run.
        every: iterations between progress lines; default a tenth of the run (at least 1).
            The last iteration always gets a line.
        plot_every: iterations between plot points (:meth:`wants_point`); 0: none.
        clock: seconds, monotonic (for tests).
    """

    def __init__(self, max_iters: int, every: Optional[int] = None, plot_every: int = 0,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        if isinstance(max_iters, bool) or not isinstance(max_iters, int) or max_iters < 1:
            raise ValueError(f'max_iters={max_iters!r} is invalid: expected an int >= 1')
        self.max_iters = max_iters
        self.every = max(1, max_iters // 10) if every is None else int(every)
        if self.every < 1:
            raise ValueError(f'every={every!r} is invalid: expected an int >= 1')
        self.plot_every = int(plot_every)
        self.clock = clock
        self.start_time: Optional[float] = None
        self.first_done: Optional[int] = None
        #: ``(iteration, probs, apply_prob)`` recorded with :meth:`add_point`
        self.points: List[Tuple[int, List[float], float]] = []

    def eta(self, done: int) -> Optional[float]:
        """Seconds left after ``done`` iterations, ``None`` before two updates."""
        if self.start_time is None or self.first_done is None or done <= self.first_done:
            return None
        rate = (self.clock() - self.start_time) / (done - self.first_done)
        return rate * max(0, self.max_iters - done)

    def update(self, done: int, infos: Mapping[str, str], top: int = 3) -> Optional[str]:
        """Note that ``done`` iterations are done; the progress line when one is due, else ``None``.

        Args:
            done: iterations done (1 after the first step).
            infos: the searcher's ``log_items`` infos (the top entries by name).
            top: entries named in the line.
        """
        if self.start_time is None:
            self.start_time, self.first_done = self.clock(), done
        if done % self.every and done != self.max_iters:
            return None
        eta = self.eta(done)
        names = ', '.join(top_entries(infos, top))
        return (f'search: iter {done}/{self.max_iters}, eta {"--:--" if eta is None else format_seconds(eta)}'
                + (f', top: {names}' if names else ''))

    def wants_point(self, done: int) -> bool:
        """Whether a plot point is due after ``done`` iterations (every ``plot_every``, and the last)."""
        return self.plot_every > 0 and (done % self.plot_every == 0 or done == self.max_iters)

    def add_point(self, done: int, probs: Sequence[float], apply_prob: float) -> None:
        self.points.append((int(done), [float(p) for p in probs], float(apply_prob)))

    def series(self) -> Tuple[List[int], List[List[float]], List[float]]:
        """``(steps, probs, apply_probs)`` of the recorded points, as :func:`plot_policy` takes them."""
        return [p[0] for p in self.points], [p[1] for p in self.points], [p[2] for p in self.points]
