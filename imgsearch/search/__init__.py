"""Queries: parsing, filters, ranking, query vectors and the text cache, query images by URL, export."""
