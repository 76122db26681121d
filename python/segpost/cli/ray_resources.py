"""Before `segpost fleet` or `segpost serve` starts a local Ray instance: refuse at once a worker or
replica that asks for more GPUs or CPUs than that instance will have. Ray would wait for them
forever (a local instance never grows), and Serve's start-up would block without a word."""
from __future__ import annotations

import os
from typing import Optional


def local_ray_resources() -> Optional[dict]:
    """{"GPU": n, "CPU": n} as a Ray instance started here would detect them (Ray's own
    detection, CUDA_VISIBLE_DEVICES and the container's CPU limit included); None when this Ray
    does not offer that detection, and then nothing is checked."""
    try:
        from ray._private import accelerators, utils
    except ImportError:
        return None
    try:
        manager = accelerators.get_accelerator_manager_for_resource("GPU")
        gpus = manager.get_current_node_num_accelerators() if manager is not None else 0
        visible = manager.get_current_process_visible_accelerator_ids() if manager is not None else None
        if visible is not None:
            gpus = min(gpus, len(visible))
        return {"GPU": float(gpus), "CPU": float(utils.get_num_cpus())}
    except Exception:  # a Ray whose private detection moved: skip the check rather than guess
        return None


def check_local_resources(address: Optional[str], asks: dict, *, who: str, fixes: dict) -> None:
    """ValueError when `who` (e.g. "fleet.json: each worker asks for") asks for more of a resource than the local Ray
    instance will have. Only for an instance this command starts (no --address, or "local"; the
    same in RAY_ADDRESS): a cluster joined is someone else's and may grow. `asks`: {"GPU": 1,
    "CPU": 1}; `fixes`: per resource, the setting to change, said in the message."""
    if (address or os.environ.get("RAY_ADDRESS") or "local") != "local":
        return
    have = local_ray_resources()
    if have is None:
        return
    for resource, asked in asks.items():
        if asked > 0 and asked > have[resource]:
            found = f"only {have[resource]:g}" if have[resource] else "none"
            raise ValueError(f"{who} {asked:g} {resource}, but the local Ray instance this command starts "
                             f"has {found} (Ray would wait for it forever): {fixes[resource]}, or join a Ray "
                             "cluster that has them with --address HOST:PORT")
