"""The small error hierarchy shared by the server, the CLI and the tools.

Every error carries a message meant for a person. One place turns them into an HTML
page or JSON (``hotspot.web``), one place into a CLI message and exit code
(``hotspot.cli``): exit 2 for bad input, 1 for a failure.

    >>> raise NotFound(N_("There is no resource %(id)s here."), id="x")
"""


class HotspotError(Exception):
    """Base class: ``message`` is shown to people, ``status`` is the HTTP status."""

    status = 500
    exit_code = 1

    def __init__(self, message: str, *, status: int | None = None, **params: object):
        text = message % params if params else message
        super().__init__(text)
        self.message = text
        # The untranslated template and its parameters: a page translates the template (when
        # it was marked with N_ for extraction) and fills in the parameters.
        self.template = message
        self.params = params
        if status is not None:
            self.status = status

    def translated(self, gettext) -> str:
        """The message in the reader's language, given a ``gettext`` function."""
        template = gettext(self.template)
        return template % self.params if self.params else template


def N_(message: str) -> str:
    """Mark a message for translation without translating it now (Babel extracts N_)."""
    return message


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


class PackError(HotspotError):
    """A content pack is unusable: bad structure, bad manifest, bad file, wrong version."""

    status = 400
    exit_code = 2


class SignatureError(PackError):
    """A signature is missing, malformed, made by an untrusted key, or does not match."""


class CatalogError(HotspotError):
    """Catalog data (from the demo or a pack) does not follow the catalog format."""

    status = 400
    exit_code = 2
