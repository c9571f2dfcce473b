"""melanoma-classifier: benign-vs-malignant classifiers for dermoscopic skin-lesion images."""

__version__ = "0.1.0"
