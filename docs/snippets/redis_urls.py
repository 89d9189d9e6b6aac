from ratelimit_mw import Limiter

# Nothing connects until the first check.
Limiter("redis://localhost:6379/0", socket_timeout=0.05, socket_connect_timeout=0.05)
Limiter("rediss://cache.internal:6380/0")                       # TLS
Limiter("unix:///run/redis/redis.sock")
Limiter("redis+sentinel://10.0.0.7:26379,10.0.0.8:26379/mymaster?db=0")
Limiter("redis+cluster://10.0.0.5:7000,10.0.0.6:7000")          # Redis Cluster or Valkey cluster
