"""The path type the API accepts wherever it reads or writes a file."""

from __future__ import annotations

import os
from typing import Union

PathLike = Union[str, "os.PathLike[str]"]
