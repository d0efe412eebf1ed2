#!/usr/bin/env python
"""GPU suite: the batch augment, a DDAS step against a plain step, and CUDA-vs-CPU kernel agreement.

Run through ``benchmarks/gpu_suite.sh`` on a machine with CUDA (one command, under 3 minutes on one
H200); ``--smoke --device cpu`` runs every section at toy sizes (the test suite does, to keep the
script working). Needs torch, torchvision, kornia, numpy and cv2; not OpenMMLab (the GPU machines
lack it): rows that need mmdet say so.

Sections (each prints a markdown table; every ratio is between timings of the same run):

1. Batch augment throughput, policy ``autoaug_det_v0``, batch 16 of uint8 images with 10 boxes,
   640 and 800 px, images/s of: ``apply_chains_torch`` on the device (what ``BatchPolicyAugment``
   runs, params drawn per image on the CPU included; images already on the device); the same on
   the CPU (torch's threads); our cv2 kernels per image (``run_chain_np``) on one thread, as in
   one DataLoader worker; mmdet's CPU pipeline (our ``PolicyAugment`` built from mmdet's
   ``TRANSFORMS`` on an mmdet results dict) on one thread, where mmdet is installed.
2. DDAS step (``DDASSearcher``, K = 3: K + 2 = 5 forward/backward passes) against a plain
   training step (forward, backward, SGD step) on torchvision's RetinaNet R-50-FPN (random init),
   synthetic 800 x 800 images with 8 random boxes, batch 2 and 4; step / floor where the floor is
   K + 2 plain steps (as ``benchmarks/bench_search.py``); peak CUDA memory of both steps and the
   K + 2 flat gradient copies.
3. Device vs CPU: every op of the table at level 7 (detection convention) with the same sampled
   parameters (replayed with ``OpParams.to``) on the same float images and boxes; max pixel and
   box differences, share of pixels beyond the pixel tolerance (discrete thresholds may flip a
   few), PASS/FAIL. The exit status is 1 if any op fails, after every table is printed.
"""
from __future__ import annotations

import argparse
import sys
import time
from importlib.util import find_spec
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from det_autoaug.ops import OPS, apply_op, get_space, sample_params  # noqa: E402
from det_autoaug.policy.policy import apply_chains_torch, build_policy, run_chain_np  # noqa: E402
from det_autoaug.policy.step import ChainStep, as_chain  # noqa: E402
from det_autoaug.search.searchers import DDASSearcher, TorchSearchContext  # noqa: E402

from bench_ops import single_threaded  # noqa: E402  (torch and cv2 on one thread, as a dataloader worker)

PIXEL_TOL = 1e-3 * 255   # |device - CPU| on the 0..255 scale, for all but FLIPPED_SHARE of the pixels
FLIPPED_SHARE = 1e-3     # pixels allowed beyond PIXEL_TOL (ops with thresholds: Solarize, Posterize, ...)
BOX_TOL = 1e-3           # px
LEVEL = 7
GIB = 2 ** 30
WITH_MMDET = find_spec('mmdet') is not None and find_spec('mmengine') is not None


def sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int = 1) -> float:
    """Median seconds of ``fn`` over ``repeats`` calls after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def random_batch(n: int, size: int, boxes_per_image: int, gen: torch.Generator) -> Tuple[Tensor, List[Tensor]]:
    """``(n, 3, size, size)`` uint8 noise and ``n`` tensors ``(boxes_per_image, 4)`` of valid boxes."""
    images = torch.randint(0, 256, (n, 3, size, size), generator=gen, dtype=torch.uint8)
    boxes = []
    for _ in range(n):
        xy = torch.rand(boxes_per_image, 2, generator=gen) * size * 0.7
        wh = 8 + torch.rand(boxes_per_image, 2, generator=gen) * size * 0.25
        boxes.append(torch.cat([xy, (xy + wh).clamp(max=size - 1)], 1))
    return images, boxes


# -- 1. batch augment ------------------------------------------------------------------------------
def mmdet_pipeline(images: Tensor, boxes: Sequence[Tensor]) -> Callable[[], None]:
    """One pass of mmdet's per-image pipeline (``PolicyAugment`` from mmdet's TRANSFORMS) over the batch."""
    from mmdet.registry import TRANSFORMS
    from mmdet.structures.bbox import HorizontalBoxes

    import det_autoaug.mmdet_plugins  # noqa: F401  (registers PolicyAugment)
    transform = TRANSFORMS.build(dict(type='PolicyAugment', policy='autoaug_det_v0', channel_order='rgb'))
    np_images = [img.permute(1, 2, 0).contiguous().numpy() for img in images]

    def run() -> None:
        np.random.seed(0)
        for img, b in zip(np_images, boxes):
            transform(dict(img=img, img_shape=img.shape[:2], gt_bboxes=HorizontalBoxes(b.clone()),
                           gt_bboxes_labels=np.zeros(len(b), np.int64), gt_ignore_flags=np.zeros(len(b), bool)))
    return run


def bench_batch_augment(device: torch.device, sizes: Sequence[int], batch: int, repeats: int,
                        warmup: int) -> List[str]:
    policy = build_policy('autoaug_det_v0')
    cpu = torch.device('cpu')
    rows = [f'| size | path | img/s | {device.type} torch speed-up |', '|---|---|---|---|']
    for size in sizes:
        gen = torch.Generator().manual_seed(size)
        images, boxes = random_batch(batch, size, 10, gen)
        chains = [policy.sample_chain(gen) for _ in range(batch)]

        def torch_kernels(dev: torch.device) -> Callable[[], object]:
            imgs, bxs = images.to(dev), [b.to(dev) for b in boxes]
            return lambda: apply_chains_torch(imgs, bxs, chains, torch.Generator().manual_seed(0))

        np_images = [img.permute(1, 2, 0).contiguous().numpy() for img in images]
        np_boxes = [b.numpy() for b in boxes]

        def cv2_per_image() -> None:
            for i, (img, b, chain) in enumerate(zip(np_images, np_boxes, chains)):
                run_chain_np(img, b, chain, torch.Generator().manual_seed(i))

        t_dev = timed(torch_kernels(device), device, repeats, warmup)
        results = [(f'torch kernels (apply_chains_torch), batch {batch}, {device.type}', t_dev)]
        if device.type != 'cpu':
            results.append((f'torch kernels (apply_chains_torch), batch {batch}, cpu, {torch.get_num_threads()} '
                            'threads', timed(torch_kernels(cpu), cpu, max(1, repeats // 2), warmup=1)))
        with single_threaded():
            results.append(('cv2 kernels per image (run_chain_np), cpu, 1 thread',
                            timed(cv2_per_image, cpu, repeats, warmup=1)))
            if WITH_MMDET:
                results.append(('mmdet pipeline (PolicyAugment transform) per image, cpu, 1 thread',
                                timed(mmdet_pipeline(images, boxes), cpu, repeats, warmup=1)))
        for path, seconds in results:
            rows.append(f'| {size} | {path} | {batch / seconds:.0f} | {seconds / t_dev:.1f}x |')
        if not WITH_MMDET:
            rows.append(f'| {size} | mmdet pipeline (PolicyAugment transform) per image, cpu, 1 thread | '
                        'n/a (mmdet not installed) | n/a (mmdet not installed) |')
    return rows


# -- 2. DDAS step ----------------------------------------------------------------------------------
class DetectionContext(TorchSearchContext):
    """A search context for a torchvision detector (``loss_fn`` unused).

    Batches are ``dict(inputs=(B, 3, H, W) float on 0..255, targets=B dicts of 'boxes' (N_i, 4) and
    'labels' (N_i,))``. The loss is the sum of the detector's loss dict; :meth:`augment` applies
    the chain with the torch kernels to the images and boxes (what ``augment_batch`` does to mmdet
    data samples) and drops the labels of dropped boxes with the kernels' keep masks.
    """

    def forward_loss(self, batch: dict) -> Tuple[Tensor, Dict[str, Tensor]]:
        losses = self.model(list(batch['inputs'] / 255.0), batch['targets'])
        return sum(losses.values()), {k: v.detach() for k, v in losses.items()}

    def augment(self, batch: dict, chain: Sequence[ChainStep]) -> dict:
        with self.phase('augmentation'):
            images = batch['inputs']
            boxes = [t['boxes'] for t in batch['targets']]
            labels = [t['labels'] for t in batch['targets']]
            height, width = images.shape[-2:]
            for step in as_chain(chain):
                params = sample_params(step.op, len(images), height, width, boxes, generator=self.aug_gen,
                                       device=images.device)
                result = apply_op(step.op, images, boxes, float(step.magnitude), params, **self.filter_kwargs)
                images, boxes = result.images, result.boxes
                labels = [lab[keep] for lab, keep in zip(labels, result.keep)]
            return dict(inputs=images, targets=[dict(boxes=b, labels=lab) for b, lab in zip(boxes, labels)])


def detection_batch(n: int, size: int, gen: torch.Generator, device: torch.device) -> dict:
    images, boxes = random_batch(n, size, 8, gen)
    return dict(inputs=images.float().to(device),
                targets=[dict(boxes=b.to(device), labels=torch.randint(1, 91, (len(b),), generator=gen).to(device))
                         for b in boxes])


def peak_memory(fn: Callable[[], object], device: torch.device) -> int:
    """Peak bytes allocated on ``device`` while ``fn`` runs (what was allocated before counts); 0 on CPU."""
    if device.type != 'cuda':
        return 0
    sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    sync(device)
    return torch.cuda.max_memory_allocated(device)


def ddas_step_row(device: torch.device, size: int, batch: int, repeats: int, warmup: int) -> str:
    import torchvision
    torch.manual_seed(0)
    model = torchvision.models.detection.retinanet_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91,
                                                                 min_size=size, max_size=size)
    model.to(device).train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)
    gen = torch.Generator().manual_seed(batch)
    train = detection_batch(batch, size, gen, device)
    val = detection_batch(batch, size, gen, device)

    def plain() -> None:
        opt.zero_grad(set_to_none=True)
        losses = model(list(train['inputs'] / 255.0), train['targets'])
        sum(losses.values()).backward()
        opt.step()

    # the plain step first, before the search context allocates its K + 2 gradient copies
    t_plain = timed(plain, device, repeats, warmup)
    mem_plain = peak_memory(plain, device)
    searcher = DDASSearcher(get_space('det_default'), num_policies=3)
    ctx = DetectionContext(model, None, opt, lambda: val, searcher.num_grad_slots, seed=0)
    t_ddas = timed(lambda: searcher.step(ctx, train), device, repeats, warmup)
    mem_ddas = peak_memory(lambda: searcher.step(ctx, train), device)
    floor = searcher.num_grad_slots * t_plain   # K + 2 passes, as benchmarks/bench_search.py
    buffers = ctx.buffers.buffers.numel() * ctx.buffers.buffers.element_size()
    mem_ratio = f'{mem_ddas / mem_plain:.2f}' if mem_plain else 'n/a (cpu)'
    return (f'| {batch} x {size} px | {t_plain:.3f} | {t_ddas:.3f} | {t_ddas / t_plain:.2f} | {floor:.3f} | '
            f'{t_ddas / floor:.2f} | {mem_plain / GIB:.2f} | {mem_ddas / GIB:.2f} | {mem_ratio} | '
            f'{buffers / GIB:.3f} |')


def bench_ddas_step(device: torch.device, size: int, batches: Sequence[int], repeats: int,
                    warmup: int) -> List[str]:
    rows = ['| images | plain step s | DDAS step s | step / plain | floor s (K+2 = 5 plain steps) | step / floor | '
            'peak mem plain GiB | peak mem DDAS GiB | DDAS / plain mem | K+2 gradient copies GiB |',
            '|---|---|---|---|---|---|---|---|---|---|']
    for batch in batches:
        rows.append(ddas_step_row(device, size, batch, repeats, warmup))
        if device.type == 'cuda':
            torch.cuda.empty_cache()
    return rows


# -- 3. device vs CPU ------------------------------------------------------------------------------
def compare_devices(device: torch.device, size: int) -> Tuple[List[str], bool]:
    """One row per op of the table: the same params on the same float batch, CPU against ``device``."""
    gen = torch.Generator().manual_seed(3)
    images, boxes = random_batch(4, size, 5, gen)
    images = images.float()
    rows = [f'| op | max pixel diff | share > {PIXEL_TOL:.3g} | max box diff px | same kept boxes | result |',
            '|---|---|---|---|---|---|']
    ok = True
    for spec in OPS:
        magnitude = spec.magnitude_at(LEVEL, 'det')
        params = sample_params(spec.name, len(images), size, size, boxes, generator=torch.Generator().manual_seed(5))
        ref = apply_op(spec.name, images, boxes, magnitude, params)
        out = apply_op(spec.name, images.to(device), [b.to(device) for b in boxes], magnitude, params.to(device))
        diff = (out.images.cpu() - ref.images).abs()
        beyond = float((diff > PIXEL_TOL).float().mean())
        same_keep = all(torch.equal(a.cpu(), b) for a, b in zip(out.keep, ref.keep))
        box_diff = max([float((a.cpu() - b).abs().max()) for a, b in zip(out.boxes, ref.boxes)
                        if len(b) and a.shape == b.shape] + [0.0])
        passed = beyond <= FLIPPED_SHARE and box_diff <= BOX_TOL and same_keep
        ok &= passed
        rows.append(f'| {spec.name} | {float(diff.max()):.3g} | {beyond:.2e} | {box_diff:.2e} | '
                    f'{"yes" if same_keep else "no"} | {"PASS" if passed else "FAIL"} |')
    return rows, ok


def versions() -> str:
    import kornia
    import torchvision
    return (f'torch {torch.__version__}, torchvision {torchvision.__version__}, kornia {kornia.__version__}, '
            f'mmdet {"installed" if WITH_MMDET else "not installed"}')


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--device', default='cuda', help='device to benchmark (default cuda)')
    parser.add_argument('--smoke', action='store_true',
                        help='toy sizes (64 px, batch 2, 2 calls per timing; any device), for the test suite')
    parser.add_argument('--out', default=None, help='also write the tables to this markdown file')
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        print('gpu_bench: needs a CUDA device; torch.cuda.is_available() is False', file=sys.stderr)
        return 2
    if args.smoke:
        sizes, batch, det_size, det_batches, repeats, warmup, cmp_size = (64,), 2, 64, (2,), 1, 1, 48
    else:
        sizes, batch, det_size, det_batches, repeats, warmup, cmp_size = (640, 800), 16, 800, (2, 4), 5, 2, 256
    name = torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'
    sections = [[f'# GPU suite ({time.strftime("%Y-%m-%d")}, {name}{", smoke sizes" if args.smoke else ""})', '',
                 versions()]]

    def emit(lines: List[str]) -> None:
        sections.append(lines)
        print('\n'.join(lines), flush=True)

    print('\n'.join(sections[0]), flush=True)
    emit(['', f'## Batch augment (autoaug_det_v0, batch {batch}, 10 boxes per image, uint8)', '']
         + bench_batch_augment(device, sizes, batch, repeats, warmup))
    emit(['', f'## DDAS step vs plain step (K = 3) on torchvision RetinaNet R-50-FPN (random init, 91 classes; '
          f'torchvision because mmdet cannot be installed on the GPU machines), synthetic {det_size} x {det_size} '
          'images, 8 random boxes each', '']
         + bench_ddas_step(device, det_size, det_batches, repeats, warmup))
    rows, ok = compare_devices(device, cmp_size)
    emit(['', f'## Torch kernels, {device.type} vs cpu (level {LEVEL}, float {cmp_size} px images; tolerance: pixels '
          f'{PIXEL_TOL:.3g} on 0..255 except {FLIPPED_SHARE:.0e} of them, boxes {BOX_TOL:g} px, same kept boxes)',
          ''] + rows + ['', f'ops: {len(rows) - 2}, failed: {sum("| FAIL |" in r for r in rows)}'])
    if args.out:
        Path(args.out).write_text('\n'.join(line for lines in sections for line in lines) + '\n')
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
