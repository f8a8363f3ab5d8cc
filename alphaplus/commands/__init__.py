"""One module per `alphaplus` sub-command; each exposes `register(subparsers)`."""
