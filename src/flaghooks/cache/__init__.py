"""The flag cache and its stores.

- :class:`FlagCache` mirrors flag state from web hook events that may arrive late, twice or out of order;
- :class:`MemoryFlagStore` (the default) keeps it in one process;
- :class:`SqliteFlagStore` shares it between the processes of one host (one file);
- :class:`RedisFlagStore` shares it between hosts.

See docs/caching.md for which store suits which deployment.
"""

from __future__ import annotations

from ..exceptions import StoreError
from ._cache import FlagCache
from ._memory import MemoryFlagStore
from ._redis import RedisFlagStore
from ._sqlite import SqliteFlagStore

__all__ = ["FlagCache", "MemoryFlagStore", "RedisFlagStore", "SqliteFlagStore", "StoreError"]
