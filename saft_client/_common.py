"""Former name of ``saft_client._core`` (kept so earlier imports keep working)."""

from saft_client._core import *  # noqa: F403
from saft_client._core import split_params  # noqa: F401
