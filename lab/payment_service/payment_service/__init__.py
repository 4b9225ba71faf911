"""Reference payment service: a plain WSGI application served by gunicorn."""
