"""The web console (``/console``): static pages over the admin API."""
