"""Embedder implementations beside the sentence-transformers reference (``qa.embedding``)."""
