"""The audio auto-tagger of ICASSP 2020: Choi CNN, dataset, weighted loss, training loop, metrics, inference."""
