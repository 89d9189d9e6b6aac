from ratelimit_mw.engine import build_engine
from ratelimit_mw.reload import install_sighup_reload, watch_policies

engine = build_engine("policies.yaml", "memory://")
watcher = watch_policies(engine, "policies.yaml")         # reloads when the file changes
reloader = install_sighup_reload(engine, "policies.yaml")  # and on kill -HUP
