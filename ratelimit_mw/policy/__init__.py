"""Policies: YAML loading and validation, and the compiled route matcher.

Knows nothing of ASGI or WSGI.
"""
