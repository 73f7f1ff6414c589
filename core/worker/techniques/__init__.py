"""Worker-side implementations of the techniques declared in core/techniques/."""
