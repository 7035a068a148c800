"""Folded into :class:`pipelines.options.PrepareSpec`: the one run spec that every stage is given.
``PrepareConfig`` is its earlier name, kept for code that imports it from here."""

from .options import PrepareSpec as PrepareConfig  # noqa: F401
