"""melanoma-classifier: benign-vs-malignant classifiers for dermoscopic skin-lesion images.

    from melanoma import Classifier
    clf = Classifier.from_pretrained()
    clf.assess(["lesion.jpg"])        # rows: verdict, p_melanoma, p_skin_cancer, the differential, ...
    clf.predict_proba(["lesion.jpg"])  # scikit-learn's (n, len(clf.classes_))

``melanoma.api`` also has ``train``, ``evaluate`` and ``audit``, as the commands run them.
"""

from ._version import __version__


def __getattr__(name: str):
    # Lazy, so `import melanoma` (and the CLI's --help) stays instant and torch-free.
    if name == "Classifier":
        from .api import Classifier

        return Classifier
    raise AttributeError(f"module 'melanoma' has no attribute {name!r}")


__all__ = ["Classifier", "__version__"]
