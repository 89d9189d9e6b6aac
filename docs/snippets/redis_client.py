import redis
import redis.asyncio

from ratelimit_mw import Limiter

# Or bring your own redis-py client (sync, asyncio or cluster), with your settings.
sync_limiter = Limiter(redis.Redis(host="localhost", port=6379, socket_timeout=0.05))
async_limiter = Limiter(redis.asyncio.Redis(host="localhost", port=6379, socket_timeout=0.05))
