"""Griffe extension for the API reference: private bases (``_Receiver``, ``_Renders``) are an
implementation detail, so they are left out of the "Bases:" line of public classes; and
the public methods :class:`otp.ActorRef` takes from its mixins (``Delivery`` in
otp/_delivery.py, ``Stopping`` in otp/_stopping.py) are listed as its own, as they were
before the split (``inherited_members`` would list every subclass's inherited members)."""

from __future__ import annotations

from typing import Any

import griffe

#: Classes whose mixins' public members are documented as their own: class path -> mixins.
MIXED_IN: dict[str, tuple[str, ...]] = {
    "otp._actor.ActorRef": ("otp._delivery.Delivery", "otp._stopping.Stopping"),
}


class HidePrivateBases(griffe.Extension):
    def on_class_members(self, *, cls: griffe.Class, **kwargs: Any) -> None:
        cls.bases = [base for base in cls.bases if not str(base).rsplit(".", 1)[-1].startswith("_")]

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        if pkg.name != "otp":
            return
        for path, mixins in MIXED_IN.items():
            cls = pkg.modules_collection[path]
            for mixin_path in mixins:
                mixin = pkg.modules_collection[mixin_path]
                for name, member in list(mixin.members.items()):
                    if not name.startswith("_") and name not in cls.members:
                        # Moved, not aliased: the mixin modules are private, not rendered.
                        cls.set_member(name, member)
