"""obslab demo service: an instrumented video-publish API and its transcoder."""

__version__ = "1.4.0"
