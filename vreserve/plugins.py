"""Mount click commands that stage modules define, skipping stages that are not installed.

A stage module exposes either ``commands`` (a list) or ``command`` (one); the group that collects
them does not import the stage's internals or its heavy libraries.
"""
from __future__ import annotations

import importlib
from typing import Iterable

import click


def mount(group: click.Group, module_names: Iterable[str]) -> None:
    """Add each module's ``commands`` (or ``command``) to ``group``; an absent module is skipped,
    but an import error inside a present one is raised (a broken stage must not vanish quietly)."""
    for name in module_names:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and name.startswith(exc.name):
                continue
            raise
        found = getattr(module, "commands", None)
        if found is None:
            found = [module.command]
        for command in found:
            group.add_command(command)
