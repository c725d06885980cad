from ctxtag.common.headline import pick

REPORT = {
    "main": "neg",
    "configs": {
        "none": {"n_test": 74, "observed": {"macro": {"roc_auc": 0.7, "f1": 0.2}, "per_context": {"car": {"roc_auc": 0.5}}}},
        "neg": {"n_test": 74, "observed": {"macro": {"roc_auc": 0.8, "f1": None}}},
    },
    "labels_per_track": 3.4, "playlists_kept": 698, "playlists_kept_per_context": {"car": 10}, "flag": True,
}


def test_pick_keeps_the_numbers_at_the_patterns_nested_as_in_the_report():
    assert pick(REPORT, ["configs.*.observed.macro.roc_auc", "configs.*.observed.macro.f1"]) == {
        "configs": {"none": {"observed": {"macro": {"roc_auc": 0.7, "f1": 0.2}}},
                    "neg": {"observed": {"macro": {"roc_auc": 0.8}}}}}            # None is not a figure


def test_a_broad_pattern_takes_numbers_only_never_a_table():
    assert pick(REPORT, ["playlists_*", "labels_per_track", "flag", "main", "missing.*"]) == {
        "playlists_kept": 698, "labels_per_track": 3.4}
