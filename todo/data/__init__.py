"""The data layer: models, connections, statements."""
