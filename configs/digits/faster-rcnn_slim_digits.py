# Slim Faster R-CNN on the embedded digits dataset, trained from scratch on the CPU (no
# augmentation beyond resizing).
_base_ = [
    '../_base_/models/faster-rcnn_slim.py',
    '../_base_/datasets/det_digits.py',
    '../_base_/digits_runtime.py',
]
