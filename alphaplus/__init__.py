"""The `alphaplus` command: the composition root that starts each service kind."""
