"""What crosses the process boundary: camera sources (sources: OpenCV; nvdec: NVDEC), sinks
(JSON Lines, MQTT), the records written per camera and round (records), credentials kept out
of all of it (secrets), and drawing results onto frames (annotate). The core never imports this."""
