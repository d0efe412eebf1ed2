# DDAS search on CIFAR-10, official settings (GPU): python tools/search_cls.py configs/cls/wrn40-2_cifar10_ddas.py
_base_ = ['./_base_/cifar_wrn40-2_ddas.py']
