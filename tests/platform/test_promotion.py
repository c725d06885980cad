"""The promotion gate's rule (ctxtag.platform.promotion.decide), a pure function."""

import numpy as np

from ctxtag.platform.promotion import decide

CONTEXTS = ("party", "sleep", "car")


def test_no_champion_passes():
    result = decide(np.array([0.6, 0.7, 0.5]), None, CONTEXTS, 0.02)
    assert result.passed and result.champion_macro_auc is None
    assert result.challenger_macro_auc == 0.6


def test_better_macro_and_small_drops_pass():
    result = decide(np.array([0.80, 0.71, 0.60]), np.array([0.70, 0.72, 0.60]), CONTEXTS, 0.02)
    assert result.passed
    assert result.context_drops["sleep"] == 0.72 - 0.71


def test_lower_macro_auc_is_refused_with_both_figures():
    result = decide(np.array([0.60, 0.70, 0.60]), np.array([0.70, 0.70, 0.60]), CONTEXTS, 0.5)
    assert not result.passed
    assert any("macro ROC-AUC 0.6333 < champion's 0.6667" in r for r in result.reasons)


def test_one_context_beyond_the_margin_is_refused_even_if_macro_improves():
    result = decide(np.array([0.95, 0.66, 0.90]), np.array([0.70, 0.70, 0.60]), CONTEXTS, 0.02)
    assert not result.passed
    assert result.reasons == ["sleep: ROC-AUC down 0.0400 (> 0.02)"]


def test_contexts_without_an_auc_are_left_out_of_means_and_drops():
    # a context with no test positives has no AUC: each version's macro AUC is over its finite ones
    result = decide(np.array([0.8, np.nan, 0.7]), np.array([0.7, 0.6, np.nan]), CONTEXTS, 0.02)
    assert result.passed and set(result.context_drops) == {"party"}
    assert np.allclose([result.challenger_macro_auc, result.champion_macro_auc], [0.75, 0.65])
    refused = decide(np.array([0.8, np.nan, 0.7]), np.array([0.7, 0.9, np.nan]), CONTEXTS, 0.02)
    assert not refused.passed                        # 0.75 < 0.80: the sleep AUC it lost still counts
