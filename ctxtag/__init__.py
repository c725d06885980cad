"""ctxtag: contextual music auto-tagging and recommendation."""

__version__ = "0.1.0"
