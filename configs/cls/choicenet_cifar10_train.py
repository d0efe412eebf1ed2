# Train the architecture found by choicenet_cifar10_daas_joint.py on all of CIFAR-10 (GPU) with the
# found policy: 200 epochs, SGD 0.1 Nesterov, wd 5e-4, cosine, crop + flip (as
# wrn28-10_cifar10_train.py):
#   python tools/train_cls.py configs/cls/choicenet_cifar10_train.py --device cuda \
#       --arch work_dirs/choicenet_cifar10_daas_joint --policy work_dirs/choicenet_cifar10_daas_joint/policy.json
# The backbone below is the searched supernet; --arch (required) fixes each block to its found op.
# Widths may grow for the final network (the blocks and candidates may not), e.g.
#   --cfg-options "model.backbone.widths=(128,256,512)"
_base_ = ['./wrn28-10_cifar10_train.py']
model = dict(backbone=dict(_delete_=True, type='DAChoiceNet', widths=(64, 128, 256), blocks_per_stage=3,
                           num_classes=10, dropout=0.0,
                           candidates=('conv3x3', 'conv5x5', 'sepconv3x3', 'dilconv3x3', 'maxpool3x3', 'skip')))
