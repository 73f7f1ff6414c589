"""Retrieval-augmented generation: corpus, encoder, index, generator and the three cache layers."""
