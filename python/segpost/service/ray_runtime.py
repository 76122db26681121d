"""Ray, imported where the fleet and serve need it (the `fleet` extra), with the message to install it:
the one place both applications share it, in the application layer (the core never imports Ray)."""


def import_ray():
    try:
        import ray
    except ImportError as exc:
        raise ValueError("the fleet and serve commands run on Ray: pip install 'segpost[fleet]'") from exc
    return ray
