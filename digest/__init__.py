"""caucasus-digest: a feed aggregator and daily digest mailer for South Caucasus diplomacy."""

__version__ = "0.1.0"
USER_AGENT = f"caucasus-digest/{__version__} (+https://github.com/caucasus-digest/caucasus-digest)"
