# mysite/wsgi.py
import os

from django.core.wsgi import get_wsgi_application

from ratelimit_mw import WSGIRateLimitMiddleware

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
application = WSGIRateLimitMiddleware(get_wsgi_application(), policies="policies.yaml")
