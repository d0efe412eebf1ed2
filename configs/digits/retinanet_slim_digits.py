# Slim RetinaNet on the embedded digits dataset, trained from scratch on the CPU (no
# augmentation beyond resizing). The baseline the policies are compared with.
_base_ = [
    '../_base_/models/retinanet_slim.py',
    '../_base_/datasets/det_digits.py',
    '../_base_/digits_runtime.py',
]
