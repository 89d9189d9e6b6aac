import logging

# Without structlog configured, events go to the standard logger "ratelimit_mw":
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
logging.getLogger("ratelimit_mw").setLevel(logging.WARNING)   # e.g. only breaker and backend events
