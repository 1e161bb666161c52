__version__ = "0.1.0.dev0"


def is_compatible(version) -> bool:
    """Whether a model saved by skcds ``version`` loads here: the same minor version."""
    return version is not None and str(version).split(".")[:2] == __version__.split(".")[:2]
