"""Usage metering: the one path that records usage, its daily rollup, and the metering API (``api.api_bp``)."""
