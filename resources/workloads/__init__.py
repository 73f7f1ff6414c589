"""Small workloads shipped with WattLab so `make demo` has something real to measure."""
