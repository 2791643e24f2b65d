"""Ingestion: web pages, feeds and PDFs become plain article files in the corpus (``python -m qa
add``). Each converter returns ``Article`` values (``article.py``); ``article.render`` writes one
as UTF-8 text with a front-matter block the corpus loader reads, so offsets, verbatim quotes and
incremental builds work exactly as for hand-written ``.txt`` files."""
