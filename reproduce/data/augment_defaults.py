"""The default ``augment`` settings, all in one place: every key's default, and the kit's
small datasets' own. A config's ``augment`` overrides the settings of its dataset's source
(``DataSource.augment_defaults``); ``preprocess.resolve_augment`` applies and checks them.
"""

AUGMENT_DEFAULTS = {
    "crop": True,                     # Inception-style random-resized crop
    "area_range": (0.08, 1.0),
    "aspect_ratio_range": (3 / 4, 4 / 3),
    "min_object_covered": 0.1,
    "flip": True,                     # random horizontal flip
    "randaugment": None,              # (num_layers, magnitude), e.g. (4, 5) or "405"
    "mixup_alpha": 0.0,
    "cutmix_alpha": 0.0,
}

# Digits: flips change digits' meaning and big crops cut strokes off.
DIGITS_AUGMENT = {**AUGMENT_DEFAULTS, "flip": False, "area_range": (0.65, 1.0),
                  "aspect_ratio_range": (0.85, 1.18), "min_object_covered": 0.0}
# Fashion-MNIST: the same mild crop (runs of under two epochs gain little from more), but
# a mirrored garment is still a garment.
FASHION_MNIST_AUGMENT = {**DIGITS_AUGMENT, "flip": True}
