"""The test doubles every test shares: one fake OpenAI-compatible upstream (``upstream``),
one hand-moved clock (``clock``) and one way to wait for a condition (``waiting``)."""
