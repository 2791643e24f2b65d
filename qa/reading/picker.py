"""The sentence picker as a ``Reader`` (``Settings.reader = 'picker'``): the hand-weighted
sentence scores of ``answering.build_answer``, kept beside the trained reader for comparison."""

from __future__ import annotations

import dataclasses

from ..settings import Settings
from ..types import Answer


class SentencePicker:
    name = "picker"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def read(self, question: str, hits, index, query: str) -> Answer:
        from ..answering import build_answer

        return dataclasses.replace(build_answer(index, hits, question, query, self.settings), reader=self.name)
