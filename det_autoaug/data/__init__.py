"""Datasets: the embedded detection set (MNIST digits on photographs), Fashion-MNIST, and
loaders for the classification formats users have (CIFAR, SVHN, ImageNet folders)."""
from .cls_formats import ImageFolderIndex, load_cifar, load_imagenet_folder, load_svhn, stratified_split
from .det_digits import CLASSES as DIGIT_CLASSES
from .det_digits import build_det_digits, ensure_det_digits
from .fashion_mnist import FASHION_MNIST_CLASSES, load_fashion_mnist

__all__ = ['DIGIT_CLASSES', 'FASHION_MNIST_CLASSES', 'ImageFolderIndex', 'build_det_digits',
           'ensure_det_digits', 'load_cifar', 'load_fashion_mnist', 'load_imagenet_folder', 'load_svhn',
           'stratified_split']
