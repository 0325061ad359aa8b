"""The fleet tests' ``redis-server``: :mod:`heirline.adapters.redis_server` (shared with
``heirline demo --fleet``)."""

from heirline.adapters.redis_server import RedisServer, free_port, redis_binary

__all__ = ["RedisServer", "free_port", "redis_binary"]
