"""The synthetic world for the demo and the tests: a multi-camera scene with exact ground truth
(scene), SAM3-shaped engines that really segment it (engines), mask-IoU scoring (evaluation), and
scenes where identities are hard to keep, for tracking (tracking)."""
