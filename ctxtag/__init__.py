"""ctxtag: contextual music auto-tagging and recommendation.

The Python API (ctxtag.serving.library), imported on first use so `import ctxtag` stays light:
``ctxtag.tag(audio)`` -> {context: probability} from the registry's champion tagger;
``ctxtag.contexts_for(user, device, network, when)`` -> {context: probability} from the
situational model on the user's online features.
"""

__version__ = "0.1.0"
__all__ = ["contexts_for", "tag", "tagger_version"]


def __getattr__(name: str):
    if name in __all__:
        from ctxtag.serving import library

        return getattr(library, name)
    raise AttributeError(f"module 'ctxtag' has no attribute {name!r}")
