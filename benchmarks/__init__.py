"""airspeed velocity (asv) suites for pyapalis; configured by ``asv.conf.json``."""
