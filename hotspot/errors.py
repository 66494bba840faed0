"""The small error hierarchy shared by the server, the CLI and the tools.

Every error carries a message meant for a person. One place turns them into an HTML
page or JSON (``hotspot.web``), one place into a CLI message and exit code
(``hotspot.cli``): exit 2 for bad input, 1 for a failure.

    >>> raise NotFound("No resource with id 'x'.")
"""


class HotspotError(Exception):
    """Base class: ``message`` is shown to people, ``status`` is the HTTP status."""

    status = 500
    exit_code = 1

    def __init__(self, message: str, *, status: int | None = None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status


class BadRequest(HotspotError):
    """The input (a form, a query string, a header, a file) is not acceptable."""

    status = 400
    exit_code = 2


class NotFound(HotspotError):
    status = 404
    exit_code = 2


class RangeNotSatisfiable(HotspotError):
    status = 416
    exit_code = 2


class ConfigError(HotspotError):
    """The configuration file or a command-line setting is wrong."""

    exit_code = 2


class StoreError(HotspotError):
    """The durable store cannot be read or written."""


class StoreCorrupt(StoreError):
    """The store file exists but cannot be parsed; it is kept untouched for recovery."""


class CatalogError(HotspotError):
    """Catalog data (from the demo or a pack) does not follow the catalog format."""

    status = 400
    exit_code = 2
