"""Streaming one answer: :class:`MoEStream`, what :meth:`AdaptiveMoE.stream` returns."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from .output import MoEOutput


class MoEStream:
    """Iterates over the text of one answer as it is generated; ``.output`` holds the
    :class:`MoEOutput` once the iteration ends (see :meth:`AdaptiveMoE.stream`). Breaking out of the
    loop early does not stop the generation under way; it finishes in the background."""

    def __init__(self, moe: Any, prompt: Any, generation: Any) -> None:  # moe: the AdaptiveMoE answering
        self.moe, self.prompt, self.generation = moe, prompt, generation
        self.output: MoEOutput | None = None
        self._error: BaseException | None = None

    def __iter__(self) -> Iterator[str]:
        streamer = _FirstRowStreamer(self.moe.base.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=600)

        def work() -> None:
            try:
                with self.moe.base.lock:
                    self.output = self.moe._answer([self.prompt], self.generation, None, stream=streamer)[0]
            except BaseException as e:  # noqa: BLE001 - re-raised in the consuming thread
                self._error = e
            finally:
                streamer.end()

        thread = threading.Thread(target=work, name="adaptive_moe-stream", daemon=True)
        thread.start()
        for piece in streamer:
            if piece:
                yield piece
        thread.join()
        if self._error is not None:
            raise self._error
        if self.output is not None and not streamer.streamed_any and self.output.text:
            yield self.output.text  # no streamed generation chose the text (a post-mode base answer, an abstention)


def _first_row_streamer_class():
    from transformers import TextIteratorStreamer

    class FirstRowStreamer(TextIteratorStreamer):
        """A text streamer that follows the first row of a batch (a mixture's rows carry the same tokens)."""

        streamed_any = False

        def put(self, value):
            if value.dim() > 1:
                value = value[:1]
            if not self.next_tokens_are_prompt:
                self.streamed_any = True
            super().put(value)

    return FirstRowStreamer


def _FirstRowStreamer(*args: Any, **kwargs: Any):  # a class made lazily: transformers is imported on first use
    return _first_row_streamer_class()(*args, **kwargs)
