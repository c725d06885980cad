"""Chen et al.: audio embeddings learnt from listening feedback (user branch, Siamese audio branch), their splits, losses and evaluation."""
