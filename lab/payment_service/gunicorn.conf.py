"""Gunicorn settings of the payment service; the bind address comes from the start command."""

worker_class = "gthread"
workers = 1
threads = 8
# SIGTERM is a graceful stop: in-flight requests get this long to finish.
graceful_timeout = 20
timeout = 30
# Clients hold persistent connections through the load balancer. Longer than any proxy idle timeout, so the
# proxy, not the service, closes an idle connection (no race on reuse); a stopping worker closes them in 2 s.
keepalive = 65
# Load the application in the master: a configuration error stops the start with one clear message.
preload_app = True
accesslog = "-"
errorlog = "-"
loglevel = "info"
# Blue and green run side by side on one host: a shared default control socket would clash.
control_socket_disable = True


def worker_exit(server: object, worker: object) -> None:
    """gunicorn's hook after a worker's graceful stop: the application finishes its background work (queued emails)."""
    close = getattr(getattr(worker, "wsgi", None), "close", None)
    if callable(close):
        close()
