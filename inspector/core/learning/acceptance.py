"""Which classes are acceptable parts, and what an escape is.

A production line sorts every part into one of three paths:

- **pass**: the part goes down the line with no human look;
- **defect**: the model predicts a defect class, the part is set aside as defective (a predicted
  defect is never an escape: at worst a good part is scrapped or re-inspected there);
- **review**: a person looks at the part.

A class is *acceptable* when parts of that class may pass (``ok``, ``good``…); every other class
is a *defect* class. The project remembers the acceptable classes in the settings key
:data:`SETTING_ACCEPTABLE` (a JSON list of class ids); until an engineer sets it, the classes
whose name is one of :data:`ACCEPTABLE_NAMES` (case-insensitive) are acceptable.

Escape rate (the figure that matters on the line)
--------------------------------------------------
An **escape** is a defective part (its true class is not acceptable) that the decision rule
*passes*: the model predicts an acceptable class, its calibrated probability of being acceptable
(sum over the acceptable classes) is at or above the review threshold, the part is not novel,
and the model was shown safe (see below). In symbols, over the parts whose true class is a
defect class::

    escape rate = #(defective parts passed without review) / #(defective parts)

It is a rate among *defective* parts, not among all parts: "at most 1 % of defective parts go
down the line unseen". Parts routed to review or to the defect path are not escapes. The
**review share** is the share of *all* parts routed to review. Both are estimated from labels
the predicting model did not train on (random audit labels for the honest figure, with Wilson
intervals: :func:`inspector.core.learning.metrics.escape_estimate`).

A model that could not be shown to meet the escape target routes every part to review, so its
escape rate is 0 by construction and its review share 100 %.
"""

from __future__ import annotations

import json
from typing import Iterable

#: settings key: JSON list of the class ids whose parts are acceptable
SETTING_ACCEPTABLE = "acceptable_classes"
#: class names acceptable by default (compared case-insensitively, after trimming)
ACCEPTABLE_NAMES = frozenset({"ok", "good", "pass", "passed", "free", "defect-free", "defect_free", "defect free",
                              "functional", "normal", "accept", "accepted", "acceptable", "clean", "no defect",
                              "no_defect", "nodefect", "fine", "intact", "okay"})


def default_acceptable(classes) -> set[int]:
    """Class ids whose name reads as an acceptable part (``ok``, ``good``, ``pass``, ``free``…).

    ``classes`` are records with ``id`` and ``name`` (store ClassRecord).
    """
    return {int(c.id) for c in classes if c.name.strip().lower() in ACCEPTABLE_NAMES}


def acceptable_class_ids(project) -> set[int]:
    """The ids of the project's acceptable classes (see the module docstring).

    The stored setting wins when set (ids of deleted classes are dropped); otherwise classes are
    acceptable by name. May be empty: a project without an acceptable class has no escapes to
    count, and every part is routed by its predicted class.
    """
    classes = project.classes()
    live = {int(c.id) for c in classes}
    stored = project.get_setting(SETTING_ACCEPTABLE, None)
    if stored is None:
        return default_acceptable(classes)
    if isinstance(stored, str):  # tolerate a value written as a JSON string by hand
        try:
            stored = json.loads(stored)
        except ValueError:
            return default_acceptable(classes)
    try:
        return {int(c) for c in stored} & live
    except (TypeError, ValueError):
        return default_acceptable(classes)


def set_acceptable_class_ids(project, class_ids: Iterable[int]) -> set[int]:
    """Store which classes are acceptable; returns the stored set.

    Raises :class:`~inspector.core.errors.UserError` for an id that is not a class of the project.
    """
    from inspector.core.errors import UserError

    live = {int(c.id): c.name for c in project.classes()}
    ids = sorted({int(c) for c in class_ids})
    unknown = [c for c in ids if c not in live]
    if unknown:
        raise UserError(f"no class with id {unknown[0]} in this project")
    project.set_setting(SETTING_ACCEPTABLE, ids)
    return set(ids)


def set_acceptable_class_names(project, names: Iterable[str]) -> set[int]:
    """Store the acceptable classes by name (case-insensitive); returns their ids.

    Raises :class:`~inspector.core.errors.UserError` naming the first unknown class.
    """
    from inspector.core.errors import UserError

    by_name = {c.name.strip().lower(): int(c.id) for c in project.classes()}
    ids = []
    for name in names:
        key = name.strip().lower()
        if not key:
            continue
        if key not in by_name:
            raise UserError(f"no class named {name.strip()!r} in this project "
                            f"(classes: {', '.join(c.name for c in project.classes())})")
        ids.append(by_name[key])
    return set_acceptable_class_ids(project, ids)


def acceptable_mask(class_ids, acceptable: set[int]):
    """Boolean numpy mask over ``class_ids`` (a model's column order): True for acceptable classes."""
    import numpy as np

    return np.array([int(c) in acceptable for c in np.asarray(class_ids).tolist()], dtype=bool)
