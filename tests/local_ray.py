"""A test module's own local Ray instance (address "local", as `segpost fleet` starts its own:
never a cluster that Ray's session file last named). Ray is imported when called: a module that
skips without Ray imports this first."""
STARTUP_TIMEOUT = "timed out during startup"


def start_local_ray(**options):
    """ray.init of a local instance, once more if its start timed out: Ray gives a new raylet a
    fixed 30 s to register with its GCS, which a loaded 2-core CI machine can miss while the last
    module's instance is still going down (seen once in CI, 2026-12-07)."""
    import ray

    options = {"address": "local", "include_dashboard": False, "log_to_driver": False, **options}
    try:
        return ray.init(**options)
    except Exception as exc:
        if STARTUP_TIMEOUT not in str(exc):
            raise
        ray.shutdown()
        return ray.init(**options)
