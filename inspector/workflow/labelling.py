"""Labels as the workflow sees them: one label state, typed label commands, undo/redo.

Every label, from the app's keys or the command line, is written by :func:`write` through
``learner.record_label`` (the one place that records the audit flag). The app hands commands to
its writer thread, which commits them in order; the :class:`LabelBook` knows every image's
state before that commit, so the views never wait for the disk.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

from inspector.core.learning import learner
from inspector.core.store import QueueEntry

#: label kinds (as in the store); "cleared" undoes an image's label without deleting history
KINDS = ("class", "skip", "unsure", "cleared")


@dataclass(frozen=True)
class LabelState:
    """An image's latest label: ``kind`` (one of KINDS), its class (kind "class") and whether it
    answered an audit pick."""

    kind: str
    class_id: Optional[int] = None
    audit: bool = False

    @property
    def is_class(self) -> bool:
        return self.kind == "class"


CLEARED = LabelState("cleared")


@dataclass(frozen=True)
class LabelCommand:
    """Give one image one label (written by :func:`write`)."""

    image_id: int
    state: LabelState
    annotator: str = ""
    source: str = "human"


@dataclass(frozen=True)
class BulkLabelCommand:
    """Give many images the same class in one durable transaction (gallery, review)."""

    image_ids: tuple[int, ...]
    class_id: int
    annotator: str = ""
    source: str = "bulk"


Command = Union[LabelCommand, BulkLabelCommand]


def label_for_shown(image_id: int, entry: Optional[QueueEntry], kind: str, class_id: Optional[int] = None,
                    annotator: str = "", source: str = "human") -> LabelCommand:
    """The command for a label given to an image shown from queue ``entry`` (None: opened by
    hand): it answers an audit pick exactly when the entry it was shown with was one, even if the
    learner has replaced the queue since."""
    if kind not in KINDS:
        raise ValueError(f"unknown label kind {kind!r}")
    audit = bool(entry is not None and entry.audit)
    return LabelCommand(int(image_id), LabelState(kind, None if class_id is None else int(class_id), audit),
                        annotator, source)


def write(project, command: Command) -> bool:
    """Commit ``command`` durably (returns when it is on disk). Returns whether it answered an
    audit pick. Raises what the store raises (UserError/ProjectError for a refused label)."""
    if isinstance(command, BulkLabelCommand):
        project.add_labels_bulk([(i, command.class_id) for i in command.image_ids], annotator=command.annotator,
                                source=command.source)
        return False
    s = command.state
    return learner.record_label(project, command.image_id, s.class_id, kind=s.kind, annotator=command.annotator,
                                source=command.source, audit=s.audit)


def image_ids_of(command: Command) -> list[int]:
    return list(command.image_ids) if isinstance(command, BulkLabelCommand) else [command.image_id]


class LabelBook:
    """Every image's latest label as this session knows it.

    ``stored`` is what the project held when it was last read (in a worker); ``given`` are the
    labels given since, possibly not committed yet. The views ask here and never the store.
    """

    def __init__(self) -> None:
        self._stored_states: Optional[dict[int, LabelState]] = None
        self._stored_classes: Optional[dict[int, int]] = None
        self._given: dict[int, LabelState] = {}
        self._classes: dict[int, int] = {}

    @property
    def loaded(self) -> bool:
        return self._stored_classes is not None

    def load(self, states: dict[int, LabelState], class_labels: dict[int, int]) -> None:
        """What the project holds (``states``: latest event per image; ``class_labels``: latest
        class labels of live classes and usable images, as ``Project.latest_labels``)."""
        self._stored_states = dict(states)
        self._stored_classes = dict(class_labels)
        self._rebuild()

    def invalidate(self) -> None:
        """The project changed behind the book (classes merged or deleted, a refused write):
        read it again before answering."""
        self._stored_states = self._stored_classes = None

    def _rebuild(self) -> None:
        classes = dict(self._stored_classes or {})
        for image_id, state in self._given.items():
            if state.is_class:
                classes[image_id] = state.class_id
            else:
                classes.pop(image_id, None)
        self._classes = classes

    def give(self, command: Command) -> None:
        """Record a label handed to the writer (seen at once, before its commit)."""
        if isinstance(command, BulkLabelCommand):
            for i in command.image_ids:
                self._given[int(i)] = LabelState("class", int(command.class_id), False)
                self._classes[int(i)] = int(command.class_id)
            return
        self._given[command.image_id] = command.state
        if command.state.is_class:
            self._classes[command.image_id] = command.state.class_id
        else:
            self._classes.pop(command.image_id, None)

    def refused(self, image_ids) -> None:
        """Labels the project refused: forget them and read the project again."""
        for i in image_ids:
            self._given.pop(int(i), None)
        self.invalidate()

    def state(self, image_id: int) -> Optional[LabelState]:
        """The image's latest label, None when it has none."""
        given = self._given.get(int(image_id))
        if given is not None:
            return given
        return (self._stored_states or {}).get(int(image_id))

    def class_labels(self) -> dict[int, int]:
        """``image_id -> class_id`` of every image whose latest label is a class (the live dict:
        callers read it, never change it)."""
        return self._classes

    def settled(self, image_id: int) -> bool:
        """Labelled, skipped or marked unsure (the learner queues none of these again)."""
        state = self.state(image_id)
        return state is not None and state.kind != "cleared"

    def given_in_session(self) -> set[int]:
        return set(self._given)


def read_label_book(project) -> tuple[dict[int, LabelState], dict[int, int]]:
    """``(states, class labels)`` for :meth:`LabelBook.load` (two reads; a worker's job)."""
    states = {i: LabelState(e.kind, e.class_id, bool(e.audit)) for i, e in project.latest_label_events().items()}
    return states, project.latest_labels()


# ----------------------------------------------------------------------------- undo / redo
@dataclass(frozen=True)
class LabelStep:
    """One label given in this session: the image's state before and after (for undo/redo), and
    the queue entry it was shown with (why it was chosen, audit pick), kept for an undo."""

    image_id: int
    before: Optional[LabelState]
    after: LabelState
    source: str
    entry: Optional[QueueEntry] = None

    def undo_command(self, annotator: str = "") -> LabelCommand:
        """Back to the state before (an unlabelled image is 'cleared'; the project keeps every event)."""
        return LabelCommand(self.image_id, self.before or CLEARED, annotator, "human")

    def redo_command(self, annotator: str = "") -> LabelCommand:
        return LabelCommand(self.image_id, self.after, annotator, self.source)


class LabelHistory:
    """Undo/redo over label steps. Undoing writes a new event; the project keeps every event."""

    def __init__(self) -> None:
        self.done: list[LabelStep] = []
        self.undone: list[LabelStep] = []

    def record(self, step: LabelStep) -> None:
        self.done.append(step)
        self.undone.clear()

    def take_undo(self) -> Optional[LabelStep]:
        return self._move(self.done, self.undone)

    def take_redo(self) -> Optional[LabelStep]:
        return self._move(self.undone, self.done)

    @staticmethod
    def _move(source: list[LabelStep], target: list[LabelStep]) -> Optional[LabelStep]:
        """The newest step of ``source`` moved onto ``target`` (None when there is none)."""
        if not source:
            return None
        target.append(source.pop())
        return target[-1]

    def can_undo(self) -> bool:
        return bool(self.done)

    def can_redo(self) -> bool:
        return bool(self.undone)


def describe(state: Optional[LabelState], class_names: dict[int, str]) -> str:
    """A label state in words ("labelled scratch", "skipped", "unlabelled")."""
    if state is None:
        return "unlabelled"
    if state.kind == "class":
        return f"labelled {class_names.get(state.class_id, 'a removed class')}"
    return {"skip": "skipped", "unsure": "marked unsure"}.get(state.kind, "unlabelled")
