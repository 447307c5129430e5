"""The long-running side of taskqueue: one module per supervised service of the daemon."""
