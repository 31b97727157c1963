"""The command-centre console (issue 15): static pages served by `vreserve serve` at ``/`` and the few
read routes the pages need beyond the HTTP API (overview aggregates, live events, declare preview).

The HTTP API mounts it with one call, :func:`console.routes.mount_console`, handing in its own
authentication dependencies, so this package never imports the API's modules.
"""
