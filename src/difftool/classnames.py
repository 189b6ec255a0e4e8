"""User-given class names (``difftool export --classes a,b,c``), checked against the model and stored in its card.

Imported course and explainingai checkpoints carry no names; they get generic ``class0 .. classN-1``
(except a 5-feature course model, which gets the course's own five), and ``--classes`` replaces them in the
exported artifact's card. ``--class`` by index works whatever the names are.
"""

from __future__ import annotations

import dataclasses

from difftool.config import ModelCard
from difftool.errors import DifftoolError

FORBIDDEN = ",="  # the --mix syntax: hero=0.5,food=0.5


def parse_class_names(text: str) -> tuple[str, ...]:
    """``"hero, creature,food"`` -> ``("hero", "creature", "food")``; DifftoolError on a bad list."""
    names = tuple(n.strip() for n in text.split(","))
    if not names or any(not n for n in names):
        raise DifftoolError(f"--classes needs comma-separated names, e.g. hero,creature,food; got {text!r}")
    for name in names:
        if any(c in name for c in FORBIDDEN[1:]) or name.lower() == "none":
            raise DifftoolError(f"class name {name!r} cannot be used (no '=', and not 'none': --mix syntax)")
        if name.isdigit():
            raise DifftoolError(f"class name {name!r} is a number; --class N already means class index N")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise DifftoolError(f"--classes names must be unique; repeated: {', '.join(dupes)}")
    return names


def with_class_names(card: ModelCard, names: tuple[str, ...]) -> ModelCard:
    """``card`` with ``names`` as its class names; the count must be the model's class count."""
    if not card.conditional:
        raise DifftoolError("this model is unconditional: it has no classes to name; drop --classes")
    if len(names) != card.num_classes:
        raise DifftoolError(f"--classes gave {len(names)} names but this model has {card.num_classes} classes "
                            f"(now {', '.join(card.class_names) or 'unnamed'})")
    return dataclasses.replace(card, class_names=tuple(names))
