# A slim CenterNet (Zhou et al. 2019, mmdet's CenterNet without DCN) for small images, trained
# from scratch: the first three stages of a ResNet-18 with base_channels 16 (64 channels at
# stride 16: the digits are small, a stride-32 map of a 96 px image is 3x3), two deconvolutions
# back to stride 4 (CTResNetNeck, use_dcn=False), and a 32-channel CenterNetHead
# (centre heatmap with Gaussian focal loss, size and offset regression). Anchor-free heatmap
# detectors converge from scratch far faster than anchor-based focal-loss ones on this data
# (REFERENCE section 5).
model = dict(
    type='CenterNet',
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_size_divisor=32),
    backbone=dict(
        type='ResNet',
        depth=18,
        base_channels=16,
        num_stages=3,
        strides=(1, 2, 2),
        dilations=(1, 1, 1),
        out_indices=(2, ),
        frozen_stages=-1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False,
        style='pytorch',
        init_cfg=None),
    neck=dict(
        type='CTResNetNeck',
        in_channels=64,
        num_deconv_filters=(32, 32),
        num_deconv_kernels=(4, 4),
        use_dcn=False),
    bbox_head=dict(
        type='CenterNetHead',
        num_classes=10,
        in_channels=32,
        feat_channels=32,
        loss_center_heatmap=dict(type='GaussianFocalLoss', loss_weight=1.0),
        loss_wh=dict(type='L1Loss', loss_weight=0.1),
        loss_offset=dict(type='L1Loss', loss_weight=1.0)),
    train_cfg=None,
    test_cfg=dict(topk=100, local_maximum_kernel=3, max_per_img=100))
