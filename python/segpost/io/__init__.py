"""What crosses the process boundary: camera sources (sources), the records written per camera
and round (records) and drawing results onto frames (annotate). The core never imports this."""
