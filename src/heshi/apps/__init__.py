"""Applications built on the gateway: the knowledge-base bot (``kb``)."""
