"""Which image the inspector sees next, and which decoded images are kept.

:class:`Navigator` is the labelling view's position: the current image and the queue entry it
was shown with, the queue still ahead, the images behind (Back) and the ones left by going back
(shown again first). :class:`DecodeCache` is the policy of the decoded-image cache: a few images
around the current one, the current one never evicted, failures remembered with their reason.
Both are plain Python: the view asks them what to show and what to decode, and draws.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Container, Generic, Optional, TypeVar

from inspector.core.store import QueueEntry

#: images remembered for Back in one session
BACK_LIMIT = 200
#: the reason shown in the strip for an image left by going back
BACK_TO_THIS = "back to this image"

EntryOf = Callable[[int], Optional[QueueEntry]]


class Navigator:
    """Current image, queue ahead, Back and the way forward again.

    ``entry_of(image_id)`` is the image's queue entry if it is still queued (else None): the
    session answers it from the queue it holds in memory, never from the store.
    """

    def __init__(self, entry_of: EntryOf) -> None:
        self.entry_of = entry_of
        self.current: Optional[int] = None
        self.current_entry: Optional[QueueEntry] = None
        self.upcoming: list[QueueEntry] = []
        self.back_stack: list[int] = []
        self.forward: list[int] = []  # images left by going back, returned to first (last = next)

    def show(self, image_id: Optional[int], entry: Optional[QueueEntry]) -> None:
        """The view now shows ``image_id`` (None: nothing), chosen from ``entry``."""
        self.current = None if image_id is None else int(image_id)
        self.current_entry = entry

    def queue_changed(self, entries: list[QueueEntry]) -> bool:
        """The learner chose a new queue: keep the current image, refresh what comes after it.
        Returns True when the current image's entry was found now (its reason can be shown)."""
        forward = set(self.forward)
        self.upcoming = [e for e in entries if e.image_id != self.current and e.image_id not in forward]
        if self.current is not None and self.current_entry is None:
            entry = next((e for e in entries if e.image_id == self.current), None)
            if entry is not None:
                self.current_entry = entry
                return True
        return False

    def next(self, settled: Container[int]) -> tuple[Optional[int], Optional[QueueEntry]]:
        """The image to show after the current one (which goes on the Back stack): one left by
        going back first, else the head of the queue, passing over images already ``settled``
        (labelled meanwhile, e.g. in the gallery). ``(None, None)`` when nothing is queued."""
        self._leave_current(self.back_stack)
        del self.back_stack[:-BACK_LIMIT]
        if self.forward:
            image_id = self.forward.pop()
            return image_id, self.entry_of(image_id)
        while self.upcoming and self.upcoming[0].image_id in settled:
            self.upcoming.pop(0)
        if self.upcoming:
            entry = self.upcoming.pop(0)
            return entry.image_id, entry
        return None, None

    def back(self) -> Optional[tuple[int, Optional[QueueEntry]]]:
        """The previous image (the current one is shown again first after it), or None."""
        if not self.back_stack:
            return None
        self._leave_current(self.forward)
        image_id = self.back_stack.pop()
        return image_id, self.entry_of(image_id)

    def open(self, image_id: int, entry: Optional[QueueEntry] = None) -> Optional[tuple[int, Optional[QueueEntry]]]:
        """Any image (strip, gallery, map, an undone label); ``entry`` is the queue entry it came
        from when it is no longer queued. None when it is already the current image."""
        image_id = int(image_id)
        if image_id == self.current:
            return None
        self._leave_current(self.forward)
        self.upcoming = [e for e in self.upcoming if e.image_id != image_id]
        return image_id, self.entry_of(image_id) or entry

    def _leave_current(self, stack: list[int]) -> None:
        if self.current is not None:
            stack.append(self.current)

    def ahead(self, n: int) -> list[int]:
        """The next ``n`` images in the order they will be shown (to decode ahead)."""
        out = list(reversed(self.forward))[:n]
        out += [e.image_id for e in self.upcoming[:n]]
        return out[:n]

    def strip_entries(self) -> list[QueueEntry]:
        """What comes next, for the strip: images left by going back, then the queue."""
        out = [QueueEntry(i, 0, "", None, BACK_TO_THIS, None) for i in reversed(self.forward)]
        return out + list(self.upcoming)

    def queued_ahead(self) -> int:
        return len(self.upcoming)


T = TypeVar("T")


class DecodeCache(Generic[T]):
    """Decoded images by id: at most ``capacity``, least recently shown first out, never the one
    on screen; decodes under way and failures (with their reason) are remembered."""

    def __init__(self, capacity: int) -> None:
        self.capacity = int(capacity)
        self._items: "OrderedDict[int, T]" = OrderedDict()
        self._decoding: set[int] = set()
        self._failed: dict[int, str] = {}

    def __contains__(self, image_id: int) -> bool:
        return int(image_id) in self._items

    def __len__(self) -> int:
        return len(self._items)

    def get(self, image_id: int) -> Optional[T]:
        """The decoded image (now the most recently used), or None."""
        image_id = int(image_id)
        if image_id not in self._items:
            return None
        self._items.move_to_end(image_id)
        return self._items[image_id]

    def should_decode(self, image_id: int) -> bool:
        """True (and the decode counted as started) unless it is cached or being decoded."""
        image_id = int(image_id)
        if image_id in self._decoding or image_id in self._items:
            return False
        self._decoding.add(image_id)
        return True

    def decoding(self, image_id: int) -> bool:
        return int(image_id) in self._decoding

    def put(self, image_id: int, item: T, keep: Optional[int] = None) -> None:
        """A decode finished; evicts the oldest images beyond capacity, never ``keep``."""
        image_id = int(image_id)
        self._decoding.discard(image_id)
        self._failed.pop(image_id, None)
        self._items[image_id] = item
        while len(self._items) > self.capacity:
            oldest = next(iter(self._items))
            if oldest == keep:
                self._items.move_to_end(oldest)
                if len(self._items) == 1:
                    break
                continue
            self._items.popitem(last=False)

    def fail(self, image_id: int, message: str) -> None:
        self._decoding.discard(int(image_id))
        self._failed[int(image_id)] = message

    def failure(self, image_id: int) -> Optional[str]:
        """Why the image could not be decoded, or None."""
        return self._failed.get(int(image_id))
