"""The add-on's version. It is also the version of the backend wheel the extension carries: the
manifest, ``pyproject.toml``, ``pixie_backend.__version__`` and this constant must agree
(``tools/build_extension.py`` refuses to build otherwise)."""

ADDON_VERSION = "0.1.0"
