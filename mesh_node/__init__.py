"""mesh-node: pool the computers on a LAN into one OpenAI-compatible LLM service."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mesh-node")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+src"

PROTOCOL_VERSION = 1
