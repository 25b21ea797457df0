"""Vector search: the FAISS index, which index a library gets, its tuning against exact search, its builds."""
