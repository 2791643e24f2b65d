"""Rerankers that read: a small cross-encoder reordering retrieval's results near the top-k edge."""
