"""ISMIR 2020/2022: labelled streams, their features and splits, user-aware / situational / joint models, user-centric evaluation."""
