"""Griffe extension for the API reference: private bases (``_Receiver``, ``_Renders``) are an
implementation detail, so they are left out of the "Bases:" line of public classes."""

from __future__ import annotations

from typing import Any

import griffe


class HidePrivateBases(griffe.Extension):
    def on_class_members(self, *, cls: griffe.Class, **kwargs: Any) -> None:
        cls.bases = [base for base in cls.bases if not str(base).rsplit(".", 1)[-1].startswith("_")]
