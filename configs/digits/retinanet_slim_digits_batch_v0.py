# Slim RetinaNet on the digits, with policy v0 applied to the normalised, padded batch on the
# training device (BatchPolicyAugment after the data preprocessor), not in the data pipeline.
_base_ = './retinanet_slim_digits.py'
custom_imports = dict(imports=['det_autoaug.mmdet_plugins'], allow_failed_imports=False)

# BatchPolicyAugment reads mean, std and the channel order from the data preprocessor it is
# built in (det_autoaug/mmdet_plugins/batch_augment.py): nothing to copy here.
model = dict(data_preprocessor=dict(batch_augments=[dict(type='BatchPolicyAugment', policy='autoaug_det_v0')]))
