"""``vreserve schemas export | check``: the published contracts (JSON Schema, AsyncAPI) from the models.

The models are imported inside the commands (a lazy import on purpose: building them costs a few
hundred milliseconds that every other command's start-up should not pay).
"""
from __future__ import annotations

from pathlib import Path

import click


@click.group("schemas")
def schemas() -> None:
    """Published record contracts: JSON Schema and AsyncAPI generated from the models."""


@schemas.command("export")
@click.option("--docs", "docs", default="docs", show_default=True, type=click.Path(file_okay=False),
              help="Folder to write schemas/ and asyncapi.yaml into.")
def export_cmd(docs: str) -> None:
    """Write docs/schemas/*.schema.json and docs/asyncapi.yaml from the models."""
    from vreserve.schemas.export import rendered

    files = rendered(Path(docs))
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    click.echo(f"wrote {len(files)} files under {docs}/ ({len(files) - 1} JSON Schemas, 1 AsyncAPI 3 document)")


@schemas.command("check")
@click.option("--docs", "docs", default="docs", show_default=True, type=click.Path(file_okay=False))
def check_cmd(docs: str) -> None:
    """Exit 1 when the committed schema files differ from the models."""
    from vreserve.schemas.export import differences

    stale = differences(Path(docs))
    if stale:
        raise click.ClickException(f"{len(stale)} generated file(s) differ from the models (run `vreserve schemas "
                                   f"export`): {', '.join(stale)}")
    click.echo("the published contracts match the models")


commands = [schemas]
