"""Locust load scenarios. Locustfiles import locust (gevent monkey-patching): nothing outside
this package imports them, and ``python -m loadtests`` starts the service before Locust runs."""
