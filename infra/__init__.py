"""Infrastructure: the embedded-stack service definitions (and, later, migrations)."""
