"""The synthetic world for the demo and the tests: a multi-camera scene with exact ground truth
(scene), SAM3-shaped engines that really segment it (engines), and mask-IoU scoring (evaluation)."""
