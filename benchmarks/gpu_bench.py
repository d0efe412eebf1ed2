#!/usr/bin/env python
"""GPU suite: the batch augment, a DDAS step against a plain step, and CUDA-vs-CPU kernel agreement.

Run through ``benchmarks/gpu_suite.sh`` on a machine with CUDA (one command, a few minutes on one
GPU); ``--smoke --device cpu`` runs every section at toy sizes (the test suite does, to keep the
script working). Needs torch, torchvision and kornia; not OpenMMLab (GPU machines may lack it).

Sections (each prints a markdown table; ratios are measured in the same run):

1. Batch augment throughput: images/s of ``apply_chains_torch`` (the kernels ``BatchPolicyAugment``
   runs) with chains drawn from ``autoaug_det_v0``, batch 16 of uint8 images with 10 boxes, at 640
   and 800 px, on the device, against the same torch kernels on the CPU (all cores) and, where
   mmcv is installed, the cv2 kernels per image (``run_chain_np``, one process: an mmdet-style
   CPU pipeline worker).
2. DDAS step (``DDASSearcher``, K = 3: K + 2 = 5 forward/backward passes) against a plain
   training step on torchvision's RetinaNet R-50-FPN (random init; mmdet cannot be installed on
   the GPU machines lent here), synthetic COCO-sized images; step / floor where the floor is
   5 passes; peak memory of both steps and the K + 2 flat gradient copies.
3. CUDA vs CPU: every op of the table with the same parameters on the same float images and
   boxes; max pixel and box differences, share of pixels off by more than 1 (discrete
   thresholds may flip a few), PASS/FAIL against stated tolerances.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Sequence, Tuple

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from det_autoaug.ops import OPS, apply_op, get_space, sample_params  # noqa: E402
from det_autoaug.policy.policy import apply_chains_torch, build_policy  # noqa: E402
from det_autoaug.search.searchers import DDASSearcher, TorchSearchContext  # noqa: E402

PIXEL_TOL = 1.0        # max |CUDA - CPU| on the 0..255 scale, besides the flipped pixels below
FLIPPED_SHARE = 1e-3   # share of pixels allowed off by more than PIXEL_TOL (threshold ops)
BOX_TOL = 1e-2         # px


def sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int = 1) -> float:
    """Median seconds of ``fn`` over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def random_batch(n: int, size: int, boxes_per_image: int, gen: torch.Generator) -> Tuple[torch.Tensor, List]:
    images = torch.randint(0, 256, (n, 3, size, size), generator=gen, dtype=torch.uint8)
    boxes = []
    for _ in range(n):
        xy = torch.rand(boxes_per_image, 2, generator=gen) * size * 0.7
        wh = 8 + torch.rand(boxes_per_image, 2, generator=gen) * size * 0.25
        boxes.append(torch.cat([xy, (xy + wh).clamp(max=size - 1)], 1))
    return images, boxes


# -- 1. batch augment ------------------------------------------------------------------------------
def bench_batch_augment(device: torch.device, sizes: Sequence[int], batch: int, repeats: int) -> List[str]:
    policy = build_policy('autoaug_det_v0')
    rows = ['| size | device torch img/s | CPU torch img/s | cv2 per image img/s | device / CPU torch | '
            'device / cv2 |', '|---|---|---|---|---|---|']
    try:
        from det_autoaug.policy.policy import run_chain_np
        import mmcv  # noqa: F401  (the cv2 kernels' Rotate/Translate call it)
        with_cv2 = True
    except ImportError:
        with_cv2 = False
    for size in sizes:
        gen = torch.Generator().manual_seed(size)
        images, boxes = random_batch(batch, size, 10, gen)
        chains = [policy.sample_chain(gen) for _ in range(batch)]

        def run(dev: torch.device) -> Callable[[], object]:
            imgs, bxs = images.to(dev), [b.to(dev) for b in boxes]
            return lambda: apply_chains_torch(imgs, bxs, chains, torch.Generator().manual_seed(0))
        t_dev = timed(run(device), device, repeats)
        t_cpu = timed(run(torch.device('cpu')), torch.device('cpu'), max(1, repeats // 2))
        cv2_ips = ratio_cv2 = 'n/a (mmcv not installed)'
        if with_cv2:
            np_images = [img.permute(1, 2, 0).contiguous().numpy() for img in images]
            np_boxes = [b.numpy() for b in boxes]

            def per_image() -> None:
                g = torch.Generator().manual_seed(0)
                for img, b, chain in zip(np_images, np_boxes, chains):
                    run_chain_np(img, b, chain, g)
            t_cv2 = timed(per_image, torch.device('cpu'), max(1, repeats // 2))
            cv2_ips, ratio_cv2 = f'{batch / t_cv2:.0f}', f'{t_cv2 / t_dev:.1f}x'
        rows.append(f'| {size} | {batch / t_dev:.0f} | {batch / t_cpu:.0f} | {cv2_ips} | {t_cpu / t_dev:.1f}x | '
                    f'{ratio_cv2} |')
    return rows


# -- 2. DDAS step ----------------------------------------------------------------------------------
class DetectionContext(TorchSearchContext):
    """A search context for a torchvision detector: batches are ``dict(inputs=(B, 3, H, W) float
    0..255, targets=[{'boxes', 'labels'}])``; augmentation by the torch kernels, labels follow keep."""

    def forward_loss(self, batch: dict):
        images = [img / 255.0 for img in batch['inputs']]
        losses = self.model(images, batch['targets'])
        loss = sum(losses.values())
        return loss, {k: v.detach() for k, v in losses.items()}

    def augment(self, batch: dict, chain):
        images = batch['inputs']
        boxes = [t['boxes'] for t in batch['targets']]
        for op, magnitude in chain:
            params = sample_params(op, len(images), images.shape[-2], images.shape[-1], boxes,
                                   generator=self.aug_gen, device=images.device)
            result = apply_op(op, images, boxes, float(magnitude), params)
            images, boxes = result.images, result.boxes
            labels = [t['labels'][k] for t, k in zip(batch['targets'], result.keep)]
            batch = dict(inputs=images, targets=[dict(boxes=b, labels=lab) for b, lab in zip(boxes, labels)])
        return batch


def detection_batch(n: int, size: int, gen: torch.Generator, device: torch.device) -> dict:
    images, boxes = random_batch(n, size, 8, gen)
    return dict(inputs=images.float().to(device),
                targets=[dict(boxes=b.to(device), labels=torch.randint(1, 91, (len(b),), generator=gen).to(device))
                         for b in boxes])


def bench_ddas_step(device: torch.device, size: int, batch: int, repeats: int, small: bool) -> List[str]:
    import torchvision
    torch.manual_seed(0)
    if small:  # the smoke test: a toy detector of the same kind, same code path
        model = torchvision.models.detection.retinanet_resnet50_fpn(weights=None, weights_backbone=None,
                                                                     num_classes=91, min_size=size, max_size=size,
                                                                     trainable_backbone_layers=0)
    else:
        model = torchvision.models.detection.retinanet_resnet50_fpn(weights=None, weights_backbone=None,
                                                                     num_classes=91, min_size=size, max_size=size)
    model.to(device).train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)
    gen = torch.Generator().manual_seed(1)
    train = detection_batch(batch, size, gen, device)
    val = detection_batch(batch, size, gen, device)

    def plain() -> None:
        opt.zero_grad(set_to_none=True)
        losses = model([img / 255.0 for img in train['inputs']], train['targets'])
        sum(losses.values()).backward()
        opt.step()

    def memory(fn: Callable[[], None]) -> int:
        if device.type != 'cuda':
            return 0
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        sync(device)
        return torch.cuda.max_memory_allocated(device)
    # the plain step first, before the search context allocates its K + 2 gradient copies
    t_plain = timed(plain, device, repeats)
    mem_plain = memory(plain)
    searcher = DDASSearcher(get_space('det_default'), num_policies=3)
    ctx = DetectionContext(model, None, opt, lambda: val, searcher.num_grad_slots, seed=0)
    t_ddas = timed(lambda: searcher.step(ctx, train), device, repeats)
    mem_ddas = memory(lambda: searcher.step(ctx, train))
    floor = (searcher.num_policies + 2) * t_plain
    buffers = ctx.buffers.buffers.numel() * ctx.buffers.buffers.element_size()
    gib = 2 ** 30
    rows = ['| model | images | plain step s | DDAS step s | step / plain | step / floor (5 passes) | '
            'peak mem plain GiB | peak mem DDAS GiB | ratio | K+2 gradient copies GiB |',
            '|---|---|---|---|---|---|---|---|---|---|',
            f'| torchvision RetinaNet R-50-FPN | {batch} x {size} px | {t_plain:.3f} | {t_ddas:.3f} | '
            f'{t_ddas / t_plain:.2f} | {t_ddas / floor:.2f} | {mem_plain / gib:.2f} | {mem_ddas / gib:.2f} | '
            f'{mem_ddas / max(mem_plain, 1):.2f} | {buffers / gib:.2f} |']
    return rows


# -- 3. CUDA vs CPU --------------------------------------------------------------------------------
def compare_devices(device: torch.device, size: int) -> Tuple[List[str], bool]:
    gen = torch.Generator().manual_seed(3)
    images, boxes = random_batch(4, size, 5, gen)
    images = images.float()
    rows = ['| op | max pixel diff | share off > 1 | max box diff | result |', '|---|---|---|---|---|']
    ok = True
    for spec in OPS:
        magnitude = spec.magnitude_at(7, 'det')
        params = sample_params(spec.name, 4, size, size, boxes, generator=torch.Generator().manual_seed(5))
        ref = apply_op(spec.name, images, boxes, magnitude, params)
        out = apply_op(spec.name, images.to(device), [b.to(device) for b in boxes], magnitude, params.to(device))
        diff = (out.images.cpu() - ref.images).abs()
        off = float((diff > PIXEL_TOL).float().mean())
        box_diff = max([float((a.cpu() - b).abs().max()) if len(b) else 0.0 for a, b in zip(out.boxes, ref.boxes)]
                       + [0.0])
        same_keep = all(torch.equal(a.cpu(), b) for a, b in zip(out.keep, ref.keep))
        passed = off <= FLIPPED_SHARE and box_diff <= BOX_TOL and same_keep
        ok &= passed
        rows.append(f'| {spec.name} | {float(diff.max()):.3g} | {off:.2e} | {box_diff:.2e} | '
                    f'{"PASS" if passed else "FAIL"}{"" if same_keep else " (kept boxes differ)"} |')
    return rows, ok


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--device', default='cuda')
    parser.add_argument('--smoke', action='store_true', help='toy sizes (any device), for the test suite')
    parser.add_argument('--out', default=None, help='also write the tables to this markdown file')
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        print('gpu_bench: needs a CUDA device; torch.cuda.is_available() is False', file=sys.stderr)
        return 2
    name = torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'
    lines = [f'# GPU suite ({time.strftime("%Y-%m-%d")}, {name}, torch {torch.__version__})', '']
    sizes, batch, repeats = ((64,), 2, 1) if args.smoke else ((640, 800), 16, 5)
    lines += ['## Batch augment (autoaug_det_v0, batch %d, 10 boxes per image)' % batch, '']
    lines += bench_batch_augment(device, sizes, batch, repeats)
    print('\n'.join(lines), flush=True)
    step_lines = ['', '## DDAS step vs plain step (K = 3)', '']
    step_lines += bench_ddas_step(device, 64 if args.smoke else 800, 1 if args.smoke else 2,
                                  1 if args.smoke else 5, small=args.smoke)
    print('\n'.join(step_lines), flush=True)
    cmp_lines, ok = compare_devices(device, 48 if args.smoke else 256)
    cmp_lines = ['', f'## Torch kernels, {device.type} vs cpu (tolerance: pixels {PIXEL_TOL} on 0..255 except '
                 f'{FLIPPED_SHARE:.0e} of them, boxes {BOX_TOL} px, same kept boxes)', ''] + cmp_lines
    print('\n'.join(cmp_lines), flush=True)
    if args.out:
        Path(args.out).write_text('\n'.join(lines + step_lines + cmp_lines) + '\n')
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
