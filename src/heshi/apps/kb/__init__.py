"""The knowledge-base customer-service bot: ingest documents, retrieve, answer, hand off."""
