"""Zones, lines and dwell on the masks: the events a site acts on, per track.

A zone is a polygon in fractions of a camera's frame. Membership of a detection is the share of
its mask inside the polygon (``ZoneMasks``: computed on the GPU from the Tracker's packed
low-res masks, one kernel a round on the round's stream, or by the C++ CPU twin), not one point
of its box: a partly hidden person, a long diagonal object or a hand over a counter moves its
box's bottom centre across a zone's edge while its pixels stay put. The peers' rule (the box's
bottom centre inside the polygon) is available as ``rule="bottom_centre"`` for comparison.

A line is a segment with a named inward side; its two strips (the segment's span on either side)
are two regions of the same kernel, and a track's side is where the larger share of its mask
lies. ``ZoneMonitor`` turns each round's shares into events, per track: ``zone_entered`` /
``zone_left`` (after ``inertia`` frames of the new state, stamped at the first of them),
``zone_dwell`` (a stay of ``dwell_seconds``), ``zone_count`` (occupancy per zone and class when it
changes; ``overcrowded`` above ``max_count``) and ``line_crossed`` (direction "in" or "out").

Config (the pipeline's ``"zones"`` block, or ``segpost run --zones zones.json``), keyed by camera::

    {"0": [{"name": "counter", "polygon": [[0.1, 0.5], [0.6, 0.5], [0.6, 1.0], [0.1, 1.0]],
            "classes": ["person"], "min_overlap": 0.3, "dwell_seconds": 40, "max_count": 3}],
     "1": [{"name": "door", "line": [[0.5, 0.2], [0.5, 0.9]], "inward": "right"}]}
"""
from .config import LineConfig, ZoneConfig, ZoneSet, polygon_problem  # noqa: F401
from .masks import PipelineZones, ZoneMasks  # noqa: F401
from .rules import ZoneEvent, ZoneMonitor  # noqa: F401
