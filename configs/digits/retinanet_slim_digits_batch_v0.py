# Slim RetinaNet on the digits, with policy v0 applied to the normalised, padded batch on the
# training device (BatchPolicyAugment after the data preprocessor), not in the data pipeline.
_base_ = './retinanet_slim_digits.py'
custom_imports = dict(imports=['det_autoaug'], allow_failed_imports=False)

det_autoaug_policy = 'autoaug_det_v0'
model = dict(
    data_preprocessor=dict(batch_augments=[
        dict(
            type='BatchPolicyAugment',
            policy=det_autoaug_policy,
            # The preprocessor's own normalisation, so that un-normalising is exact.
            mean={{_base_.model.data_preprocessor.mean}},
            std={{_base_.model.data_preprocessor.std}},
            channel_order='rgb'),  # the preprocessor has bgr_to_rgb=True
    ]))
