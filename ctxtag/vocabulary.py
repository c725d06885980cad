"""The closed vocabularies of the system, each defined once.

params.yaml may narrow or rename the configurable ones (contexts, devices, networks, genders,
feedback); these tuples are their defaults and the names the code and tests refer to.
"""

CONTEXTS: tuple[str, ...] = (
    "car", "chill", "club", "dance", "gym", "happy", "night", "party",
    "relax", "running", "sad", "sleep", "summer", "work", "workout",
)
DEVICES: tuple[str, ...] = ("phone", "computer", "tablet", "speaker", "car", "tv")
NETWORKS: tuple[str, ...] = ("wifi", "cellular", "offline")
GENDERS: tuple[str, ...] = ("f", "m", "x")
FEEDBACK: tuple[str, ...] = ("like", "dislike", "skip")          # Chen et al.'s per-event signal

SPLITS: tuple[str, ...] = ("train", "validation", "test")         # a track's or a stream's split
SPLIT_KINDS: tuple[str, ...] = ("cold_user", "cold_track", "warm")   # ISMIR 2022's split types

LOSS_CONFIGS: tuple[str, ...] = ("none", "neg_exact", "neg_ignore_zeros", "both_exact", "both_ignore_zeros")
EMBEDDING_MODELS: tuple[str, ...] = ("basic_binary", "dcue_1vs1", "multi_1vs1", "multi_1vs4",
                                     "metric_1vs1", "metric_1vs4")   # the rows of Chen et al.'s Table 1
MODEL_FAMILIES: tuple[str, ...] = ("tagger", "context", "embeddings")             # what the registry registers
WEIGHT_FITS: tuple[str, ...] = ("train", "all")                      # the rows the loss weights are estimated on
POSITIVE_SCALINGS: tuple[str, ...] = ("mean", "mean_std")            # of the TF-IDF positive weights
