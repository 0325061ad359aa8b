"""``heirline simulate``: a fleet on virtual time, driven through the real engine."""
