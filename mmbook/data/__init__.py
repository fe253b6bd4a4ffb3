"""Data: CIFAR-10 (offline copy or checked download), your own image–text pairs, generated captions, synthetic scenes,
batch loaders, caches."""

from mmbook.data.captioned import CaptionedCIFAR10, CaptionedSplit, load_captioned_cifar10
from mmbook.data.captions import CaptionGenerator, caption_groups
from mmbook.data.cifar10 import (
    CIFAR10_CLASSES,
    CorruptDataError,
    DataNotFoundError,
    ImageSet,
    cache_dir,
    data_root,
    load_cifar10,
    locate_cifar10,
)
from mmbook.data.loaders import (
    CIFAR10_MEAN, CIFAR10_STD, IMAGE_ID, AugmentedLoader, CurriculumLoader, DeviceLoader, augment_images, image_statistics,
    normalize_images,
)
from mmbook.data.pairs import ImageTextPairs, PairSplit, load_pairs
from mmbook.data.subsets import take
from mmbook.text.vocab import LabelVocabulary

__all__ = [
    "AugmentedLoader", "CurriculumLoader", "CIFAR10_CLASSES", "CIFAR10_MEAN", "CIFAR10_STD", "IMAGE_ID", "ImageTextPairs",
    "LabelVocabulary",
    "PairSplit", "image_statistics", "load_pairs", "CaptionGenerator", "CaptionedCIFAR10", "CaptionedSplit", "CorruptDataError",
    "DataNotFoundError", "DeviceLoader", "ImageSet", "augment_images", "cache_dir", "caption_groups",
    "data_root", "load_captioned_cifar10", "load_cifar10", "locate_cifar10",
    "normalize_images", "take",
]
