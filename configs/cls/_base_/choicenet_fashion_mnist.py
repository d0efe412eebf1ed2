# The DAAS joint-search supernet on Fashion-MNIST (grey 28x28 as 3 channels), CPU-sized: three
# stages of two choice blocks (widths 8, 16, 32; six candidates per block, 'skip' where the shape
# is kept). The searched architecture is trained with tools/train_cls.py --arch.
_base_ = ['./wrn_fashion_mnist.py']
model = dict(backbone=dict(_delete_=True, type='DAChoiceNet', widths=(8, 16, 32), blocks_per_stage=2,
                           candidates=('conv3x3', 'conv5x5', 'sepconv3x3', 'dilconv3x3', 'maxpool3x3', 'skip'),
                           num_classes=10))
