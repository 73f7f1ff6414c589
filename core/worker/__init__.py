"""The worker side: the only layer that imports torch. It runs in its own process
(``python -m wattlab.core.worker SPEC.json``): loads the model, prepares it, trains or infers,
and streams JSON-lines events; it never touches the store, the CLI or the reports."""
