"""ICASSP 2020 §3: playlist readers, title matcher, labels and co-occurrence, filters, balancing, loss weights, splits."""
