"""caucasus-digest: a feed aggregator and daily digest mailer for South Caucasus diplomacy."""

from pathlib import Path

__version__ = "0.1.0"
USER_AGENT = f"caucasus-digest/{__version__} (+https://github.com/caucasus-digest/caucasus-digest)"


def _templates() -> Path:
    # An installed wheel carries the templates inside the package; a source checkout (and an
    # editable install of it) keeps them at the top of the repository.
    inside = Path(__file__).resolve().parent / "templates"
    return inside if inside.is_dir() else inside.parent.parent / "templates"


#: the mail, page and style templates shipped with the program
TEMPLATES = _templates()
