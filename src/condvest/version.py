"""condvest's version, in a module of its own: modules inside the package (the lake marker, the
CLI's ``--version``) read it without importing the package's face, which loads the stages."""

from __future__ import annotations

__version__ = "0.1.0"
