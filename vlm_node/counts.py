"""Counts that add: the one helper behind every tally a run keeps per topic, per kind or per
camera and later sums (over frames, time chunks, bags).

A counter is a dataclass whose fields are numbers or `collections.Counter`s; `add` sums another
of the same class into it field by field. Writing `add` by hand per class meant a new field
could be counted but silently left out of the sum (a chunked run then reports less than a whole
one); here every field is summed unless it is listed in `_not_summed` (settings such as a window
length, which describe the counter rather than count anything).
"""
from __future__ import annotations

import dataclasses
from collections import Counter
from typing import ClassVar, TypeVar

T = TypeVar("T", bound="Counts")


class Counts:
    """Mixin for dataclasses of counts; see the module docstring."""

    _not_summed: ClassVar[tuple[str, ...]] = ()

    def add(self: T, other: T) -> T:
        """Add `other`'s counts into this one (in place) and return self."""
        if type(other) is not type(self):
            raise TypeError(f"cannot add {type(other).__name__} to {type(self).__name__}")
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            if f.name in self._not_summed:
                continue
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if isinstance(mine, Counter):
                mine.update(theirs)
            else:
                setattr(self, f.name, mine + theirs)
        return self

    def copy(self: T) -> T:
        """An independent copy (Counter fields are not shared)."""
        fields = dataclasses.fields(self)  # type: ignore[arg-type]
        return dataclasses.replace(self, **{  # type: ignore[type-var]
            f.name: Counter(getattr(self, f.name)) for f in fields
            if f.init and isinstance(getattr(self, f.name), Counter)})
