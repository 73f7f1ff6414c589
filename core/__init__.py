"""WattLab's engine: sensors, sampling, storage and sessions. Never imports Qt."""
