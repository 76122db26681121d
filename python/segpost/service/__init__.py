"""Running unattended: the camera loop (runner: sources -> pipeline -> sinks, with a watchdog and
clean shutdown on SIGINT/SIGTERM) and its metrics and health endpoint (metrics). Used by
``segpost run`` and by the fleet's workers; built on the core and io."""
