"""Training and inference sessions. They run inside the worker process, never in the GUI."""
