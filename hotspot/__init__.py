"""Community hotspot library: the server and the services on the device."""

__version__ = "0.1.0"
