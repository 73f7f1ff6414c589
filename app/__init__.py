"""WattLab's Qt front end. Holds no measurement or ML logic: it drives ``wattlab.core``."""
